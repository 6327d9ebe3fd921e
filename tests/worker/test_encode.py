"""Encoding several outputs on threads gives the same files, in the same order, as one by one."""

import io

import pytest
from PIL import Image

from worker.encode import encode_image, encode_images


def distinct_images(count: int) -> list[Image.Image]:
    """Images that differ from each other, so an out-of-order result shows."""
    return [Image.new("RGB", (64, 48), (40 * index, 255 - 40 * index, 90)) for index in range(count)]


@pytest.mark.parametrize("output_format", ["webp", "png", "jpg"])
def test_threads_give_the_same_bytes_in_order(output_format: str) -> None:
    images = distinct_images(4)

    encoded = encode_images(images, output_format, 80)

    assert encoded == [encode_image(image, output_format, 80) for image in images]
    assert [Image.open(io.BytesIO(data)).getpixel((0, 0))[0] for data in encoded] == pytest.approx(
        [0, 40, 80, 120], abs=3
    )


def test_one_image_and_none() -> None:
    (image,) = distinct_images(1)

    assert encode_images([image], "webp", 90) == [encode_image(image, "webp", 90)]
    assert encode_images([], "webp", 90) == []


def test_png_keeps_every_pixel() -> None:
    """PNG is written at zlib's fastest level for speed; being lossless, it must decode to the same pixels."""
    image = Image.effect_noise((96, 64), 60).convert("RGB")

    decoded = Image.open(io.BytesIO(encode_image(image, "png", 80)))

    assert decoded.tobytes() == image.tobytes()
