"""The one image-to-image recipe shared by every preset: a RenderRequest and its init image in, one PIL
image per seed out."""

from collections.abc import Callable

import torch

# Defining modules: mypy resolves `from diffusers import ...` to diffusers' dummy objects.
from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import StableDiffusion3Pipeline
from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3_img2img import (
    StableDiffusion3Img2ImgPipeline,
)
from diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteScheduler
from PIL import Image

from models.inputs import RenderRequest
from worker.pipelines.shared_steps import checked_output, seed_generators, step_callback, validate_request


def img2img_pipeline(pipe: StableDiffusion3Pipeline) -> StableDiffusion3Img2ImgPipeline:
    """An img2img pipeline sharing `pipe`'s modules (no second copy of the weights), with its own scheduler.

    Built from the components, not `from_pipe`: `from_pipe` without a dtype casts the shared modules to
    float32, doubling the text-to-image pipeline's memory too. Schedulers are stateful, hence a fresh one.
    """
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)
    img2img = StableDiffusion3Img2ImgPipeline(**{**pipe.components, "scheduler": scheduler})
    img2img.set_progress_bar_config(disable=True)  # type: ignore[no-untyped-call]
    return img2img


def image_to_image(
    pipe: StableDiffusion3Img2ImgPipeline,
    request: RenderRequest,
    init_image: Image.Image,
    on_step: Callable[[int, int], None],
) -> list[Image.Image]:
    """Render `request` from `init_image`, calling `on_step(done, total)` after each denoising step.

    About `steps x strength` steps run (at least one); `total` is the number that really runs. An
    exception raised by `on_step` propagates unchanged and stops the run before the VAE decode.
    """
    # 1. Validate: the pipeline's own errors would name its arguments, not the request's fields.
    validate_request(pipe, request)
    if not 0 <= request.strength <= 1:
        raise ValueError(f"strength must be between 0 and 1 but is {request.strength}.")

    # 2. Strength: the pipeline runs steps - int(steps * (1 - strength)) steps, none at 0; keep one.
    strength = max(request.strength, 1 / request.steps)

    # 3. Seed generators: one per image, on the CPU.
    generators = seed_generators(request.seeds)

    # 4. Report progress: num_timesteps is the strength-shortened count. Raising here is the cancel path.
    on_step_end = step_callback(on_step)

    # 5. Run the pipeline. height/width explicitly: without them the init image is resized to 1024x1024.
    with torch.inference_mode():
        output = pipe(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt,
            image=init_image.convert("RGB"),
            strength=strength,
            height=request.height,
            width=request.width,
            num_inference_steps=request.steps,
            guidance_scale=request.guidance_scale,
            num_images_per_prompt=len(request.seeds),
            generator=generators,
            callback_on_step_end=on_step_end,
            output_type="pil",
        )

    # 6. Check the output.
    return checked_output(output.images, request)
