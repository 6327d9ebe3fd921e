"""Output encoding at 1024x1024: one by one against `worker.encode.encode_images` (threads), per format.

The worker holds its GPU while it encodes, so this time adds to every image's GPU-seconds. The image is
synthetic (gradients plus mild noise), so file sizes are only indicative. Medians of 5. A benchmark: it
asserts nothing.
"""

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image

sys.path[:0] = [str(Path(__file__).resolve().parents[2])]

from worker.encode import encode_image, encode_images  # noqa: E402

SIZE = 1024
IMAGES = 4
REPEATS = 5
QUALITY = 90


def synthetic_image(seed: int) -> Image.Image:
    ramp = np.linspace(0, 255, SIZE)
    smooth = (np.add.outer(ramp, ramp) / 2).astype(np.uint8)
    noise = np.random.default_rng(seed).integers(0, 24, (SIZE, SIZE), dtype=np.uint8)
    return Image.fromarray(np.stack([smooth, smooth.T, smooth // 2 + noise], axis=-1))


def one_by_one(images: list[Image.Image], output_format: str) -> list[bytes]:
    return [encode_image(image, output_format, QUALITY) for image in images]


def on_threads(images: list[Image.Image], output_format: str) -> list[bytes]:
    return encode_images(images, output_format, QUALITY)


def median_ms(encode: Callable[[list[Image.Image], str], list[bytes]], images: list[Image.Image], fmt: str) -> float:
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        encode(images, fmt)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    images = [synthetic_image(seed) for seed in range(IMAGES)]
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {os.cpu_count()} CPUs · Python {platform.python_version()}")
    print(f"| format | 1 image ms | {IMAGES} one by one ms | {IMAGES} on threads ms | speed-up |")
    print("|---|---|---|---|---|")
    for output_format in ("webp", "png", "jpg"):
        one = median_ms(one_by_one, images[:1], output_format)
        serial = median_ms(one_by_one, images, output_format)
        threaded = median_ms(on_threads, images, output_format)
        print(f"| {output_format} | {one:.0f} | {serial:.0f} | {threaded:.0f} | {serial / threaded:.2f}× |")


if __name__ == "__main__":
    main()
