"""What a run costs the operator and what the caller is charged."""

SECONDS_PER_HOUR = 3600


def gpu_cost_usd(gpu_seconds: float, gpu_hourly_usd: float) -> float:
    """The operator's cost of the GPU time one run used."""
    return round(gpu_seconds * gpu_hourly_usd / SECONDS_PER_HOUR, 8)


def price_usd(price_per_megapixel_usd: float, width: int, height: int, num_images: int) -> float:
    """The caller's price under a per-megapixel rule (as fal prices SD3.5 Medium)."""
    return round(price_per_megapixel_usd * width * height * num_images / 1_000_000, 8)
