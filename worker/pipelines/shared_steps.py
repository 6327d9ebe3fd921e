"""The steps both recipes (text-to-image, image-to-image) take around their pipeline call."""

from collections.abc import Callable
from typing import Any, Protocol

import torch
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


def seed_generators(seeds: tuple[int, ...]) -> list[torch.Generator]:
    """One CPU generator per image, so each image depends only on its seed and the noise is the same on
    every device."""
    return [torch.Generator(device="cpu").manual_seed(seed) for seed in seeds]


class StepCounted(Protocol):
    num_timesteps: int


def step_callback(on_step: Callable[[int, int], None]) -> Callable[..., dict[str, Any]]:
    """A ``callback_on_step_end`` reporting (steps done, steps that really run). An exception raised by
    ``on_step`` propagates and stops the run before the VAE decode (``pipe._interrupt`` would still decode)."""

    def on_step_end(pipeline: StepCounted, i: int, _t: torch.Tensor, _tensors: dict[str, Any]) -> dict[str, Any]:
        on_step(i + 1, pipeline.num_timesteps)
        return {}  # no tensor replaced

    return on_step_end


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
