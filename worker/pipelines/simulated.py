"""A SIMULATED model for benchmarks: it sleeps a fixed time per image and draws a placeholder, no inference.

It stands in for a GPU when measuring the farm itself (`make bench-scale`): the job takes the same path as a
real one (claim, per-step heartbeats and cancel checks, encode, upload, finalize), but the time per image is
FARM_SIMULATED_SECONDS of sleep. No torch import, so many worker processes fit on a small machine. Every
place that reports on a run says it was simulated: `build`, `gpu_class` (recorded on each prediction) and
the pixels themselves.

For the fault suite (tests/faults) it can also misbehave on purpose, only when a test-only marker is set
(SimulatedFaults) and the prompt contains it: crash its process every time (a poison job), or ignore the soft
time limit (so only the hard limit stops it).
"""

import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw

from models.inputs import RenderRequest
from worker.pipelines import OnStep

SIMULATED_BUILD_PREFIX = "simulated/sleep-"
SIMULATED_GPU_CLASS = "simulated (no GPU)"
LABEL = "SIMULATED"
LABEL_COLOUR = (255, 255, 255)
LABEL_MARGIN_PX = 4


def simulated_steps(request: RenderRequest, init_image: Image.Image | None) -> int:
    """Denoising steps a real run would report: image-to-image runs about steps x strength, at least one."""
    if init_image is None:
        return request.steps
    return max(1, int(request.steps * request.strength))


def placeholder_image(seed: int, width: int, height: int) -> Image.Image:
    """A flat image whose colour follows the seed, labelled SIMULATED: cheap to encode, never mistaken."""
    colour = (seed % 256, seed // 256 % 256, seed // 65536 % 256)
    image = Image.new("RGB", (width, height), colour)
    ImageDraw.Draw(image).text((LABEL_MARGIN_PX, LABEL_MARGIN_PX), LABEL, fill=LABEL_COLOUR)
    return image


@dataclass(frozen=True)
class SimulatedFaults:
    """Test-only misbehaviour, triggered by a marker in the prompt; an empty marker is off."""

    crash_marker: str = ""  # SIGKILL this process at the first step, every attempt
    ignore_soft_limit_marker: str = ""  # block Celery's soft time limit signal (SIGUSR1) for the whole run

    def wanted(self, marker: str, prompt: str) -> bool:
        return bool(marker) and marker in prompt


NO_FAULTS = SimulatedFaults()
# Celery's prefork pool (billiard) raises SoftTimeLimitExceeded in the child from this signal.
SOFT_TIME_LIMIT_SIGNAL = signal.SIGUSR1


class SimulatedPredictor:
    """Sleeps `seconds_per_image` per image, spread over the steps, calling `on_step` after each step."""

    def __init__(self, seconds_per_image: float, faults: SimulatedFaults = NO_FAULTS) -> None:
        if seconds_per_image < 0:
            raise ValueError(f"simulated seconds per image must be at least 0 but is {seconds_per_image}.")
        self.seconds_per_image = seconds_per_image
        self.faults = faults
        self.build = f"{SIMULATED_BUILD_PREFIX}{seconds_per_image:g}s"
        self.gpu_class = SIMULATED_GPU_CLASS

    def predict(
        self, request: RenderRequest, on_step: OnStep, init_image: Image.Image | None = None
    ) -> list[Image.Image]:
        return self._render([request], simulated_steps(request, init_image), on_step)[0]

    def predict_batch(self, requests: Sequence[RenderRequest], on_step: OnStep) -> list[list[Image.Image]]:
        return self._render(requests, requests[0].steps, on_step)

    def _render(self, requests: Sequence[RenderRequest], steps: int, on_step: OnStep) -> list[list[Image.Image]]:
        prompts = " ".join(request.prompt for request in requests)
        # A real pipeline denoises all images of a call together: each step costs all of them a step.
        step_seconds = self.seconds_per_image * sum(len(request.seeds) for request in requests) / steps
        if self.faults.wanted(self.faults.ignore_soft_limit_marker, prompts):
            # Left blocked: the process only ends by the hard limit's kill (or, on time, the next job unblocks it).
            signal.pthread_sigmask(signal.SIG_BLOCK, {SOFT_TIME_LIMIT_SIGNAL})
        else:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {SOFT_TIME_LIMIT_SIGNAL})
        for step in range(1, steps + 1):
            # A plain sleep per step: time spent in on_step (heartbeats) adds to the run, as it stalls a GPU.
            time.sleep(step_seconds)
            if self.faults.wanted(self.faults.crash_marker, prompts):
                os.kill(os.getpid(), signal.SIGKILL)  # as a segfault or the OOM killer would
            on_step(step, steps)  # raising here (cancel, lost claim) stops the run, as in the real pipelines
        return [
            [placeholder_image(seed, request.width, request.height) for seed in request.seeds] for request in requests
        ]
