"""Pricing rules and the run-cost record a finished prediction stores."""

import pytest

from models.catalog import SD35_MEDIUM
from models.cost import PricingRule, PricingUnit, RunCost, gpu_cost_usd

RUN = {"width": 1344, "height": 768, "num_images": 2, "gpu_seconds": 7.5}


@pytest.mark.parametrize(
    ("rule", "price"),
    [
        (PricingRule(PricingUnit.IMAGE, 0.03), 0.06),
        (PricingRule(PricingUnit.MEGAPIXEL, 0.02), round(0.02 * 1344 * 768 * 2 / 1e6, 8)),
        (PricingRule(PricingUnit.GPU_SECOND, 0.001), 0.0075),
    ],
)
def test_each_pricing_unit_counts_what_it_says(rule: PricingRule, price: float) -> None:
    assert rule.price_usd(**RUN) == pytest.approx(price, abs=1e-12)


def test_sd35_medium_is_priced_like_fal_per_megapixel() -> None:
    assert SD35_MEDIUM.pricing.public() == {"unit": "megapixel", "usd_per_unit": 0.02}
    assert SD35_MEDIUM.pricing.price_usd(width=1024, height=1024, num_images=1, gpu_seconds=99) == 0.02097152


def test_run_cost_derives_cost_from_gpu_time_and_hourly_price() -> None:
    cost = RunCost.of_run(gpu_seconds=36.0, gpu_class="NVIDIA H100", gpu_hourly_usd=2.5, price_usd=0.02)
    assert cost.cost_usd == gpu_cost_usd(36.0, 2.5) == 0.025
    assert cost.columns() == {
        "gpu_seconds": 36.0,
        "gpu_class": "NVIDIA H100",
        "gpu_hourly_usd": 2.5,
        "cost_usd": 0.025,
        "price_usd": 0.02,
    }
    assert RunCost.of_run(gpu_seconds=1.0, gpu_class="cpu", gpu_hourly_usd=0.0).price_usd == 0.0
