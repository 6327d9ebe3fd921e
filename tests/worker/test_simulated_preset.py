"""The simulated preset: a fixed time per image, per-step progress, a labelled placeholder, and no torch."""

import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from models.inputs import RenderRequest
from tests.services import REPO_ROOT
from worker.pipelines import PRESET_MODELS, PRESETS, load_predictor, preset_queues
from worker.pipelines.simulated import LABEL_COLOUR, SIMULATED_GPU_CLASS, SimulatedPredictor

SECONDS = 0.2


def request(**changes: object) -> RenderRequest:
    fields: dict[str, object] = {
        "prompt": "anything",
        "negative_prompt": "",
        "width": 256,
        "height": 128,
        "steps": 8,
        "guidance_scale": 5.0,
        "seeds": (7, 8),
        "output_format": "png",
        "output_quality": 90,
    }
    return RenderRequest(**(fields | changes))  # type: ignore[arg-type]


def test_it_sleeps_the_set_time_per_image_reporting_every_step() -> None:
    predictor = load_predictor("simulated", model_path="", simulated_seconds=SECONDS)
    steps: list[tuple[int, int]] = []

    started = time.perf_counter()
    images = predictor.predict(request(), lambda done, total: steps.append((done, total)))
    elapsed = time.perf_counter() - started

    assert steps == [(step, 8) for step in range(1, 9)]
    assert elapsed >= 2 * SECONDS  # two images
    assert [image.size for image in images] == [(256, 128), (256, 128)]
    assert images[0].getpixel((255, 127)) != images[1].getpixel((255, 127))  # colour follows the seed


def test_a_batch_sleeps_for_all_its_images_and_returns_each_request_its_own() -> None:
    predictor = load_predictor("simulated", model_path="", simulated_seconds=SECONDS)
    steps: list[tuple[int, int]] = []

    started = time.perf_counter()
    batched = predictor.predict_batch(
        [request(), request(seeds=(9, 10))], lambda done, total: steps.append((done, total))
    )
    elapsed = time.perf_counter() - started

    assert steps == [(step, 8) for step in range(1, 9)]
    assert elapsed >= 4 * SECONDS  # four images in one call
    alone = predictor.predict(request(seeds=(9, 10)), lambda done, total: None)
    assert [image.tobytes() for image in batched[1]] == [image.tobytes() for image in alone]


def test_it_is_labelled_a_simulation() -> None:
    predictor = load_predictor("simulated", model_path="", simulated_seconds=SECONDS)
    image = predictor.predict(request(seeds=(0,)), lambda done, total: None)[0]

    assert predictor.build == "simulated/sleep-0.2s"
    assert predictor.gpu_class == SIMULATED_GPU_CLASS and "simulated" in predictor.gpu_class
    # The SIMULATED label is drawn (anti-aliased, white) in the corner of an otherwise flat image (seed 0: black).
    label, rest = image.crop((0, 0, 80, 20)).convert("L"), image.crop((100, 30, 256, 128))
    assert label.getextrema()[1] >= min(LABEL_COLOUR) - 10
    assert rest.getextrema() == ((0, 0), (0, 0), (0, 0))


def test_image_to_image_runs_about_steps_times_strength() -> None:
    steps: list[int] = []
    predictor = SimulatedPredictor(0.0)
    init = Image.new("RGB", (64, 64))

    predictor.predict(request(steps=10, strength=0.35), lambda done, total: steps.append(total), init)

    assert set(steps) == {3} and len(steps) == 3


def test_raising_from_a_step_stops_the_run() -> None:
    class Canceled(Exception):
        pass

    def cancel_at_two(done: int, total: int) -> None:
        if done == 2:
            raise Canceled

    started = time.perf_counter()
    with pytest.raises(Canceled):
        SimulatedPredictor(4.0).predict(request(steps=40, seeds=(1,)), cancel_at_two)
    assert time.perf_counter() - started < 1.0  # 2 of 40 steps of 0.1 s, not the whole 4 s


def test_negative_time_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 0"):
        SimulatedPredictor(-1.0)


def test_every_preset_serves_the_model_of_its_queue() -> None:
    assert set(PRESET_MODELS) == set(PRESETS)
    assert preset_queues("simulated") == ["sd35-medium"]
    with pytest.raises(ValueError, match="nope"):
        preset_queues("nope")


def test_a_simulated_worker_never_imports_torch() -> None:
    """So many worker processes fit on a small machine: the whole worker side, loaded, without torch."""
    probe = (
        "import sys; import worker.app, worker.tasks, worker.hooks; from worker.warm import get_predictor; "
        "p = get_predictor(); assert p.gpu_class.startswith('simulated'), p.gpu_class; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'diffusers', 'transformers')))"
    )
    env = {"FARM_MODEL_PRESET": "simulated", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_worker_refuses_the_queue_of_a_model_it_has_not_loaded() -> None:
    celery = Path(sys.executable).parent / "celery"
    argv = [str(celery), "-A", "worker.app", "worker", "--pool", "prefork", "-c", "1", "--queues", "another-model"]
    # Refused before connecting anywhere: the broker URL points at a closed port.
    env = {"FARM_MODEL_PRESET": "simulated", "FARM_BROKER_URL": "redis://127.0.0.1:1/0", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and "queue 'another-model' isn't" in result.stderr
