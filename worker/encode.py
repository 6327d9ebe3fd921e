"""Image encoding for outputs."""

import io

from PIL import Image

PIL_FORMATS = {"webp": "WEBP", "jpg": "JPEG", "jpeg": "JPEG", "png": "PNG"}


def encode_image(image: Image.Image, output_format: str, quality: int) -> bytes:
    """``image`` as webp/jpg/jpeg/png bytes; ``quality`` (0–100) applies to the lossy formats."""
    buffer = io.BytesIO()
    pil_format = PIL_FORMATS[output_format]
    if pil_format == "PNG":
        image.save(buffer, format="PNG")
    else:
        image.convert("RGB").save(buffer, format=pil_format, quality=quality)
    return buffer.getvalue()
