"""The checks both recipes run around the pipeline call (text-to-image and image-to-image)."""

from typing import Protocol

from PIL import Image

from models.inputs import RenderRequest


class SizedPipeline(Protocol):
    vae_scale_factor: int
    patch_size: int


def validate_request(pipe: SizedPipeline, request: RenderRequest) -> None:
    """Fix-it errors named after the request's fields (the pipeline's own would name its arguments)."""
    multiple = pipe.vae_scale_factor * pipe.patch_size
    for name, side in (("width", request.width), ("height", request.height)):
        if side % multiple != 0:
            lower, upper = side // multiple * multiple, (side // multiple + 1) * multiple
            raise ValueError(f"{name} must be a multiple of {multiple} but is {side}. You can use {lower} or {upper}.")
    if not request.seeds:
        raise ValueError("seeds is empty: give one seed per image (at least one).")
    if request.steps < 1:
        raise ValueError(f"steps must be at least 1 but is {request.steps}.")


def checked_output(images: list[Image.Image], request: RenderRequest) -> list[Image.Image]:
    """The pipeline's images as RGB; callers store them as-is, so a wrong count or size fails here."""
    rgb = [image.convert("RGB") for image in images]
    sizes = {image.size for image in rgb}
    if len(rgb) != len(request.seeds) or sizes != {(request.width, request.height)}:
        raise RuntimeError(
            f"pipeline returned {len(rgb)} images of sizes {sorted(sizes)}, expected {len(request.seeds)} "
            f"of {request.width}x{request.height}"
        )
    return rgb
