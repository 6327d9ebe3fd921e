"""The one text-to-image recipe shared by every preset: a RenderRequest in, one PIL image per seed out."""

from collections.abc import Callable
from typing import Any

import torch

# The defining module: mypy resolves `from diffusers import ...` to diffusers' dummy objects.
from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import StableDiffusion3Pipeline
from PIL import Image

from models.inputs import RenderRequest


def text_to_image(
    pipe: StableDiffusion3Pipeline, request: RenderRequest, on_step: Callable[[int, int], None]
) -> list[Image.Image]:
    """Render `request` with `pipe`, calling `on_step(done, total)` after each denoising step.

    An exception raised by `on_step` propagates unchanged and stops the run before the VAE decode.
    """
    # 1. Validate: the pipeline's own errors would name its arguments, not the request's fields.
    multiple = pipe.vae_scale_factor * pipe.patch_size
    for name, side in (("width", request.width), ("height", request.height)):
        if side % multiple != 0:
            lower, upper = side // multiple * multiple, (side // multiple + 1) * multiple
            raise ValueError(f"{name} must be a multiple of {multiple} but is {side}. You can use {lower} or {upper}.")
    if not request.seeds:
        raise ValueError("seeds is empty: give one seed per image (at least one).")
    if request.steps < 1:
        raise ValueError(f"steps must be at least 1 but is {request.steps}.")

    # 2. Seed generators: one CPU generator per image, so each image depends only on its seed and the
    # initial noise is the same on every device.
    generators = [torch.Generator(device="cpu").manual_seed(seed) for seed in request.seeds]

    # 3. Report progress: raising here (not `pipe._interrupt`, which still VAE-decodes) is the cancel path.
    def on_step_end(
        pipeline: StableDiffusion3Pipeline, i: int, _t: torch.Tensor, _tensors: dict[str, Any]
    ) -> dict[str, Any]:
        on_step(i + 1, pipeline.num_timesteps)
        return {}  # no tensor replaced

    # 4. Run the pipeline
    with torch.inference_mode():
        output = pipe(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt,
            height=request.height,
            width=request.width,
            num_inference_steps=request.steps,
            guidance_scale=request.guidance_scale,
            num_images_per_prompt=len(request.seeds),
            generator=generators,
            callback_on_step_end=on_step_end,
            output_type="pil",
        )

    # 5. Check the output: callers store these as-is, so a wrong count or size must fail here.
    images: list[Image.Image] = [image.convert("RGB") for image in output.images]
    sizes = {image.size for image in images}
    if len(images) != len(request.seeds) or sizes != {(request.width, request.height)}:
        raise RuntimeError(
            f"pipeline returned {len(images)} images of sizes {sorted(sizes)}, expected {len(request.seeds)} "
            f"of {request.width}x{request.height}"
        )
    return images
