"""The optional safety checker: diffusers' StableDiffusionSafetyChecker with its CLIP image processor, from a
local directory only (FARM_SAFETY_CHECKER_PATH). Flagged images are replaced by black images of the same size,
as the hosted APIs do, and the flags are returned for `has_nsfw_concepts`.
"""

from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

# The defining module: mypy resolves `from diffusers import ...` to diffusers' dummy objects.
from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
from PIL import Image

# The PIL backend: CLIPImageProcessor wants torchvision, which the worker does not install, and would fall back
# to this class with a warning anyway.
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

HUB_REPO = "CompVis/stable-diffusion-safety-checker"
CONFIG = "config.json"
PREPROCESSOR_CONFIG = "preprocessor_config.json"
WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")
WHAT_TO_PUT_THERE = (
    f"Put a diffusers StableDiffusionSafetyChecker there ({CONFIG} and model.safetensors or pytorch_model.bin) "
    f"with its CLIP image processor's {PREPROCESSOR_CONFIG}, e.g. `hf download {HUB_REPO} --local-dir DIR` "
    "beforehand (the worker never downloads), or leave FARM_SAFETY_CHECKER_PATH empty to run without a checker."
)


class SafetyCheckerNotLoaded(RuntimeError):
    """FARM_SAFETY_CHECKER_PATH names no usable safety checker; the message says what to put there."""


class SafetyChecker:
    """A loaded checker; `check` flags images and blacks out the flagged ones."""

    def __init__(self, model: StableDiffusionSafetyChecker, processor: CLIPImageProcessorPil) -> None:
        self.model = model
        self.processor = processor

    def check(self, images: list[Image.Image]) -> tuple[list[Image.Image], list[bool]]:
        """The images with each flagged one replaced by a black image of its size, and one flag per image."""
        if not images:
            return [], []
        pixels = self.processor([image.convert("RGB") for image in images], return_tensors="pt").pixel_values
        clip_input = pixels.to(self.model.device, self.model.dtype)
        # The model also blacks out its `images` argument in place; the flags are all that is used from it.
        _, flags = self.model(clip_input=clip_input, images=[np.asarray(image) for image in images])
        has_nsfw_concepts = [bool(flag) for flag in flags]
        checked = [
            Image.new(image.mode, image.size) if flagged else image
            for image, flagged in zip(images, has_nsfw_concepts, strict=True)
        ]
        return checked, has_nsfw_concepts


def load_safety_checker(path: str) -> SafetyChecker:
    """Load the checker at `path` with local files only: fp16 on CUDA, fp32 on CPU. Slow, so once per process.

    Raises SafetyCheckerNotLoaded when the directory is missing, incomplete or not a safety checker: a checker
    with weights left at their initial values would flag nothing, so it is never served.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise SafetyCheckerNotLoaded(f"FARM_SAFETY_CHECKER_PATH={path!r} is not a directory. {WHAT_TO_PUT_THERE}")
    missing = [name for name in (CONFIG, PREPROCESSOR_CONFIG) if not (folder / name).is_file()]
    if not any((folder / name).is_file() for name in WEIGHTS):
        missing.append(" or ".join(WEIGHTS[:2]))
    if missing:
        raise SafetyCheckerNotLoaded(f"{folder} has no {', '.join(missing)}. {WHAT_TO_PUT_THERE}")
    cuda = torch.cuda.is_available()  # next to the pipeline, which also runs on CUDA when there is one
    try:
        processor = CLIPImageProcessorPil.from_pretrained(str(folder), local_files_only=True)
        # Annotated as returning the model alone; with output_loading_info it is (model, info).
        model, info = cast(
            tuple[StableDiffusionSafetyChecker, dict[str, Any]],
            StableDiffusionSafetyChecker.from_pretrained(
                str(folder),
                dtype=torch.float16 if cuda else torch.float32,
                device_map="cuda" if cuda else None,
                local_files_only=True,
                output_loading_info=True,
            ),
        )
    except (OSError, ValueError, TypeError, KeyError, RuntimeError) as error:
        message = f"{folder} could not be loaded as a safety checker ({error}). {WHAT_TO_PUT_THERE}"
        raise SafetyCheckerNotLoaded(message) from error
    if absent := sorted(info["missing_keys"]):
        # transformers fills missing weights with initial (or uninitialized) values and only warns.
        raise SafetyCheckerNotLoaded(
            f"{folder} is not a complete StableDiffusionSafetyChecker: its weights lack "
            f"{', '.join(absent[:8])}{' …' if len(absent) > 8 else ''}. {WHAT_TO_PUT_THERE}"
        )
    model.requires_grad_(False)  # from_pretrained left it in eval mode
    return SafetyChecker(model, processor)
