"""The worker's text-to-image and image-to-image pipelines, one Predictor per model preset.

This package imports torch and diffusers (in its submodules, loaded on first use): only the worker may
import it, never the gateway or `models`.
"""

from collections.abc import Callable, Sequence
from importlib.metadata import version
from typing import TYPE_CHECKING, Protocol

from PIL import Image

from models.catalog import MODELS, SD35_MEDIUM
from models.inputs import RenderRequest

if TYPE_CHECKING:
    from worker.pipelines.simulated import SimulatedFaults

PRESETS = ("sd3.5-medium", "tiny", "simulated")
# What `simulated` sleeps per image unless told otherwise (FARM_SIMULATED_SECONDS).
DEFAULT_SIMULATED_SECONDS = 1.0
# The catalog model (owner/name) each preset serves; tiny and simulated stand in for the real one. A worker
# consumes exactly the broker queues of its preset's models (worker/app.py).
PRESET_MODELS: dict[str, tuple[str, ...]] = dict.fromkeys(PRESETS, (SD35_MEDIUM.ref,))

# Called after each denoising step with (steps done, 1-based; total steps). Raising from it cancels the
# run: the exception propagates out of predict() unchanged and nothing else runs (no VAE decode).
OnStep = Callable[[int, int], None]


class Predictor(Protocol):
    """A loaded pipeline; one predict() at a time (diffusers schedulers are stateful)."""

    build: str  # preset + library versions: "tiny/diffusers-0.42.1/transformers-5.23.0/torch-2.13.0+cpu"
    gpu_class: str  # "cpu" or torch.cuda.get_device_name()

    def predict(
        self, request: RenderRequest, on_step: OnStep, init_image: Image.Image | None = None
    ) -> list[Image.Image]:
        """One RGB image per seed in `request.seeds`, each exactly request.width x request.height; from
        `init_image` (image-to-image at `request.strength`) when one is given."""
        ...

    def predict_batch(self, requests: Sequence[RenderRequest], on_step: OnStep) -> list[list[Image.Image]]:
        """Text-to-image `requests` sharing `RenderRequest.batch_shape`, denoised together in one pipeline call:
        one image list per request, each as `predict` would return it (up to float rounding)."""
        ...


def preset_queues(preset: str) -> list[str]:
    """The broker queues a worker running `preset` consumes: one per model it serves."""
    if preset not in PRESET_MODELS:
        raise ValueError(f"unknown model preset {preset!r}: use one of {', '.join(PRESETS)}")
    return [MODELS[ref].queue for ref in PRESET_MODELS[preset]]


def build_id(preset: str) -> str:
    """Identifies what produced the pixels: the same seed gives other pixels on other library versions."""
    libraries = "/".join(f"{name}-{version(name)}" for name in ("diffusers", "transformers", "torch"))
    return f"{preset}/{libraries}"


def load_predictor(
    preset: str,
    model_path: str,
    *,
    simulated_seconds: float = DEFAULT_SIMULATED_SECONDS,
    simulated_faults: "SimulatedFaults | None" = None,
) -> Predictor:
    """Build the predictor of `preset` (only "sd3.5-medium" reads `model_path`, only "simulated" reads
    `simulated_seconds` and the test-only `simulated_faults`); slow, so call once per process."""
    # Imported here so that loading one preset never pays for the others' imports (simulated: no torch).
    if preset == "simulated":
        from worker.pipelines.simulated import NO_FAULTS, SimulatedPredictor

        return SimulatedPredictor(simulated_seconds, simulated_faults or NO_FAULTS)
    if preset == "tiny":
        from worker.pipelines.tiny import TinyPredictor

        return TinyPredictor()
    if preset == "sd3.5-medium":
        from worker.pipelines.sd35 import SD35Predictor

        return SD35Predictor(model_path)
    raise ValueError(f"unknown model preset {preset!r}: use one of {', '.join(PRESETS)}")
