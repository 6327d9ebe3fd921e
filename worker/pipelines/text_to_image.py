"""The one text-to-image recipe shared by every preset: a RenderRequest in, one PIL image per seed out."""

from collections.abc import Callable

import torch

# The defining module: mypy resolves `from diffusers import ...` to diffusers' dummy objects.
from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import StableDiffusion3Pipeline
from PIL import Image

from models.inputs import RenderRequest
from worker.pipelines.shared_steps import checked_output, seed_generators, step_callback, validate_request


def text_to_image(
    pipe: StableDiffusion3Pipeline, request: RenderRequest, on_step: Callable[[int, int], None]
) -> list[Image.Image]:
    """Render `request` with `pipe`, calling `on_step(done, total)` after each denoising step.

    An exception raised by `on_step` propagates unchanged and stops the run before the VAE decode.
    """
    # 1. Validate: the pipeline's own errors would name its arguments, not the request's fields.
    validate_request(pipe, request)

    # 2. Seed generators: one per image, on the CPU.
    generators = seed_generators(request.seeds)

    # 3. Report progress: raising from on_step is the cancel path.
    on_step_end = step_callback(on_step)

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

    # 5. Check the output.
    return checked_output(output.images, request)
