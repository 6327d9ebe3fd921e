"""What a run costs the operator and what the caller is charged.

Cost is the operator's: the GPU time a run held (claim to finalize) at the worker's hourly price.
Price is the caller's: the model's pricing rule applied to what the run produced. Failed and
canceled runs record their cost but are not charged (price 0), as fal bills successful requests only.
"""

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

SECONDS_PER_HOUR = 3600
PIXELS_PER_MEGAPIXEL = 1_000_000
USD_DECIMALS = 8  # enough for one GPU-second at a cent an hour


class PricingUnit(StrEnum):
    """What a model's price is counted in."""

    IMAGE = "image"  # per output image, whatever its size
    MEGAPIXEL = "megapixel"  # per output megapixel, as fal prices SD3.5 Medium ($0.02/MP)
    GPU_SECOND = "gpu_second"  # per second the run held a GPU


@dataclass(frozen=True)
class PricingRule:
    """A model's price: ``usd_per_unit`` for each ``unit`` a run produces or uses."""

    unit: PricingUnit
    usd_per_unit: float

    def units(self, *, width: int, height: int, num_images: int, gpu_seconds: float) -> float:
        """How many units one run counts under this rule."""
        if self.unit is PricingUnit.IMAGE:
            return float(num_images)
        if self.unit is PricingUnit.MEGAPIXEL:
            return width * height * num_images / PIXELS_PER_MEGAPIXEL
        return gpu_seconds

    def price_usd(self, *, width: int, height: int, num_images: int, gpu_seconds: float) -> float:
        """The caller's price of one successful run."""
        units = self.units(width=width, height=height, num_images=num_images, gpu_seconds=gpu_seconds)
        return round(self.usd_per_unit * units, USD_DECIMALS)

    def public(self) -> dict[str, Any]:
        """The rule as the catalog shows it."""
        return {"unit": self.unit.value, "usd_per_unit": self.usd_per_unit}


def gpu_cost_usd(gpu_seconds: float, gpu_hourly_usd: float) -> float:
    """The operator's cost of the GPU time one run used."""
    return round(gpu_seconds * gpu_hourly_usd / SECONDS_PER_HOUR, USD_DECIMALS)


@dataclass(frozen=True)
class RunCost:
    """What one run used and cost, as stored on its prediction when it ends."""

    gpu_seconds: float
    gpu_class: str
    gpu_hourly_usd: float
    cost_usd: float
    price_usd: float

    @classmethod
    def of_run(cls, *, gpu_seconds: float, gpu_class: str, gpu_hourly_usd: float, price_usd: float = 0.0) -> "RunCost":
        """A run's record: its cost follows from the GPU time and hourly price; price 0 when not charged."""
        return cls(
            gpu_seconds=round(gpu_seconds, 6),
            gpu_class=gpu_class,
            gpu_hourly_usd=gpu_hourly_usd,
            cost_usd=gpu_cost_usd(gpu_seconds, gpu_hourly_usd),
            price_usd=price_usd,
        )

    def columns(self) -> dict[str, Any]:
        """The prediction columns this record fills."""
        return {
            "gpu_seconds": self.gpu_seconds,
            "gpu_class": self.gpu_class,
            "gpu_hourly_usd": self.gpu_hourly_usd,
            "cost_usd": self.cost_usd,
            "price_usd": self.price_usd,
        }
