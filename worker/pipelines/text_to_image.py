"""The one text-to-image recipe shared by every preset: RenderRequests in, one PIL image per seed out."""

from collections.abc import Callable, Sequence

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
    return text_to_image_batch(pipe, [request], on_step)[0]


def text_to_image_batch(
    pipe: StableDiffusion3Pipeline, requests: Sequence[RenderRequest], on_step: Callable[[int, int], None]
) -> list[list[Image.Image]]:
    """Render `requests` in one pipeline call, each with its own prompts and seeds: one image list per request.
    They must share size, steps, guidance and image count (`RenderRequest.batch_shape`). One request runs
    exactly as `text_to_image` (a one-prompt list is what the pipeline makes of a prompt string)."""
    # 1. Validate: the pipeline's own errors would name its arguments, not the request's fields.
    for request in requests:
        validate_request(pipe, request)
    shapes = {request.batch_shape() for request in requests}
    if len(shapes) != 1 or None in shapes:
        raise ValueError(
            f"a batch's requests must share size, steps, guidance and image count: {sorted(map(str, shapes))}"
        )
    first = requests[0]

    # 2. Seed generators: one per image, on the CPU, in the pipeline's order (each prompt's images together).
    generators = seed_generators(tuple(seed for request in requests for seed in request.seeds))

    # 3. Report progress: raising from on_step is the cancel path.
    on_step_end = step_callback(on_step)

    # 4. Run the pipeline
    with torch.inference_mode():
        output = pipe(
            prompt=[request.prompt for request in requests],
            negative_prompt=[request.negative_prompt for request in requests],
            height=first.height,
            width=first.width,
            num_inference_steps=first.steps,
            guidance_scale=first.guidance_scale,
            num_images_per_prompt=len(first.seeds),
            generator=generators,
            callback_on_step_end=on_step_end,
            output_type="pil",
        )

    # 5. Check the output, split back into each request's images.
    per_request = len(first.seeds)
    images: list[Image.Image] = output.images
    if len(images) != per_request * len(requests):
        raise RuntimeError(f"pipeline returned {len(images)} images, expected {per_request * len(requests)}")
    return [
        checked_output(images[index * per_request : (index + 1) * per_request], request)
        for index, request in enumerate(requests)
    ]
