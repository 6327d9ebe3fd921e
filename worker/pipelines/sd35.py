"""Stable Diffusion 3.5 Medium from local weights: bf16 on CUDA, fp32 on CPU. Never downloads."""

from collections.abc import Sequence
from pathlib import Path

import torch

# The defining module: mypy resolves `from diffusers import ...` to diffusers' dummy objects.
from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import StableDiffusion3Pipeline
from huggingface_hub import snapshot_download
from huggingface_hub.constants import HF_HUB_CACHE
from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError
from PIL import Image

from models.inputs import RenderRequest
from models.settings import get_settings
from worker.pipelines import OnStep, build_id
from worker.pipelines.fast_path import (
    SpeedLevers,
    apply_speed_levers,
    levers_from_settings,
    levers_tag,
    warm_up,
)
from worker.pipelines.image_to_image import image_to_image, img2img_pipeline
from worker.pipelines.text_to_image import text_to_image, text_to_image_batch

HUB_REPO = "stabilityai/stable-diffusion-3.5-medium"


def find_weights(model_path: str) -> Path:
    """The local folder of the diffusers-format weights: `model_path` itself, or its Hugging Face cache."""
    folder = Path(model_path).expanduser()
    if folder.is_dir():
        if not (folder / "model_index.json").is_file():
            raise RuntimeError(
                f"{folder} has no model_index.json, so it is not a diffusers-format SD3.5 folder. Set "
                f"FARM_MODEL_PATH to a folder made by `hf download {HUB_REPO} --local-dir DIR`."
            )
        return folder
    try:
        return Path(snapshot_download(model_path, local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError) as error:
        raise RuntimeError(
            f"SD3.5 weights not found: {model_path!r} is neither a local folder nor a repo in the Hugging "
            f"Face cache at {HF_HUB_CACHE}. The worker never downloads: run `hf download {HUB_REPO}` "
            "(`huggingface-cli download` before huggingface_hub 1.0) beforehand, after accepting the license "
            "on the model page and `hf auth login`; or set FARM_MODEL_PATH to a local folder holding the "
            "diffusers-format weights."
        ) from error


class SD35Predictor:
    """The real model, loaded once per process; ~16 GB of weights in bf16 with T5 resident."""

    def __init__(self, model_path: str, levers: SpeedLevers | None = None) -> None:
        """`levers`: the speed levers to apply on CUDA (default: from the FARM_ settings); ignored on a CPU."""
        folder = find_weights(model_path)
        cuda = torch.cuda.is_available()
        levers = (levers or levers_from_settings(get_settings())) if cuda else SpeedLevers()
        # Without T5 it is never read from disk (9.5 GB), rather than loaded and dropped.
        no_t5: dict[str, None] = {"text_encoder_3": None, "tokenizer_3": None} if levers.drop_t5 else {}
        self.pipe = StableDiffusion3Pipeline.from_pretrained(
            str(folder), dtype=torch.bfloat16 if cuda else torch.float32, local_files_only=True, **no_t5
        )
        if cuda and not levers.cpu_offload:  # offloaded, each model goes to the GPU only while it runs
            self.pipe.to("cuda")
        self.pipe.set_progress_bar_config(disable=True)  # type: ignore[no-untyped-call]
        # Before the img2img pipeline is built from the same modules, so it gets the same levers.
        apply_speed_levers(self.pipe, levers, torch.device("cuda" if cuda else "cpu"))
        if levers.compile_blocks:
            warm_up(self.pipe)  # compile time paid here, at worker start, not by the first user
        self.img2img = img2img_pipeline(self.pipe)  # same modules and dtype, own scheduler
        self.build = build_id("sd3.5-medium") + levers_tag(levers)  # levers change pixels too
        self.gpu_class = torch.cuda.get_device_name() if cuda else "cpu"

    def predict(
        self, request: RenderRequest, on_step: OnStep, init_image: Image.Image | None = None
    ) -> list[Image.Image]:
        if init_image is None:
            return text_to_image(self.pipe, request, on_step)
        return image_to_image(self.img2img, request, init_image, on_step)

    def predict_batch(self, requests: Sequence[RenderRequest], on_step: OnStep) -> list[list[Image.Image]]:
        return text_to_image_batch(self.pipe, requests, on_step)
