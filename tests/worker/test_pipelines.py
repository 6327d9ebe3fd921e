"""The worker's pipelines, on the real tiny SD3 pipeline (random weights, real diffusers code, no mocks)."""

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat

from models.inputs import RenderRequest
from worker.pipelines import PRESETS, load_predictor
from worker.pipelines.tiny import TinyPredictor

REPO_ROOT = Path(__file__).resolve().parents[2]


def make_request(**changes: object) -> RenderRequest:
    fields: dict[str, object] = {
        "prompt": "a red fox in the snow",
        "negative_prompt": "blurry",
        "width": 320,
        "height": 256,
        "steps": 4,
        "guidance_scale": 5.0,
        "seeds": (1, 2),
        "output_format": "png",
        "output_quality": 90,
    }
    return RenderRequest(**(fields | changes))  # type: ignore[arg-type]


def no_progress(done: int, total: int) -> None:
    pass


def pixels_sha256(images: Sequence[Image.Image]) -> str:
    digest = hashlib.sha256()
    for image in images:
        digest.update(image.tobytes())
    return digest.hexdigest()


def mean_abs_difference(a: Image.Image, b: Image.Image) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


@pytest.fixture(scope="module")
def predictor() -> TinyPredictor:
    tiny = load_predictor("tiny", model_path="")
    assert isinstance(tiny, TinyPredictor)
    return tiny


def test_one_rgb_image_per_seed_of_the_exact_size(predictor: TinyPredictor) -> None:
    images = predictor.predict(make_request(width=320, height=256, seeds=(1, 2)), no_progress)

    assert len(images) == 2
    assert [(image.mode, image.size) for image in images] == [("RGB", (320, 256))] * 2


def test_largest_size_fits_the_position_embedding(predictor: TinyPredictor) -> None:
    # 1536 px = 96 patches a side, the tiny transformer's pos_embed_max_size.
    images = predictor.predict(
        make_request(width=1536, height=1536, steps=1, guidance_scale=0.0, seeds=(1,)), no_progress
    )

    assert images[0].size == (1536, 1536)


def test_same_request_gives_the_same_pixels(predictor: TinyPredictor) -> None:
    request = make_request()

    first = predictor.predict(request, no_progress)
    second = predictor.predict(request, no_progress)

    assert [image.tobytes() for image in first] == [image.tobytes() for image in second]


def test_a_fresh_process_gives_the_same_pixels(predictor: TinyPredictor) -> None:
    request = make_request()
    script = """
import hashlib, json, sys
from models.inputs import RenderRequest
from worker.pipelines import load_predictor

fields = json.loads(sys.argv[1])
request = RenderRequest(**{**fields, "seeds": tuple(fields["seeds"])})
digest = hashlib.sha256()
for image in load_predictor("tiny", "").predict(request, lambda done, total: None):
    digest.update(image.tobytes())
print(digest.hexdigest())
"""
    result = subprocess.run(
        [sys.executable, "-c", script, json.dumps(dataclasses.asdict(request))],
        cwd=REPO_ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )

    assert result.stdout.strip() == pixels_sha256(predictor.predict(request, no_progress))


def test_different_seeds_give_different_pixels(predictor: TinyPredictor) -> None:
    first, second = predictor.predict(make_request(seeds=(1, 2)), no_progress)

    assert first.tobytes() != second.tobytes()
    assert mean_abs_difference(first, second) > 10


def test_each_image_depends_on_its_own_seed_only(predictor: TinyPredictor) -> None:
    _, batched = predictor.predict(make_request(seeds=(1, 2)), no_progress)
    (alone,) = predictor.predict(make_request(seeds=(2,)), no_progress)

    # Batched and solo runs are not bit-identical (different matmul shapes), only off by rounding.
    assert mean_abs_difference(batched, alone) < 1


def test_a_batch_gives_each_request_its_own_prompt_and_seeds(predictor: TinyPredictor) -> None:
    fox, boat = make_request(seeds=(1, 2)), make_request(prompt="a blue boat at sea", negative_prompt="", seeds=(7, 8))
    batched = predictor.predict_batch([fox, boat], no_progress)

    assert [len(images) for images in batched] == [2, 2]
    for request, images in zip([fox, boat], batched, strict=True):
        alone = predictor.predict(request, no_progress)
        # As solo renders, up to rounding (the batch's matmuls have other shapes).
        assert all(mean_abs_difference(a, b) < 1 for a, b in zip(images, alone, strict=True))
    assert mean_abs_difference(batched[0][0], batched[1][0]) > 10


def test_a_batch_of_other_shapes_fails_before_running(predictor: TinyPredictor) -> None:
    steps: list[int] = []
    with pytest.raises(ValueError, match="must share size, steps, guidance and image count"):
        predictor.predict_batch([make_request(), make_request(steps=5)], lambda done, total: steps.append(done))
    assert steps == []


def test_the_prompt_changes_the_pixels(predictor: TinyPredictor) -> None:
    (fox,) = predictor.predict(make_request(seeds=(1,)), no_progress)
    (boat,) = predictor.predict(make_request(prompt="a blue boat at sea", seeds=(1,)), no_progress)

    assert fox.tobytes() != boat.tobytes()


def test_on_step_sees_every_step_in_order(predictor: TinyPredictor) -> None:
    calls: list[tuple[int, int]] = []

    predictor.predict(make_request(steps=5), lambda done, total: calls.append((done, total)))

    assert calls == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]


def test_an_exception_from_on_step_stops_the_run(predictor: TinyPredictor) -> None:
    class Stop(Exception):
        pass

    stop = Stop()
    calls: list[int] = []
    decodes: list[int] = []

    def on_step(done: int, total: int) -> None:
        calls.append(done)
        if done == 2:
            raise stop

    request = make_request(steps=4)
    expected = pixels_sha256(predictor.predict(request, no_progress))
    hook = predictor.pipe.vae.decoder.register_forward_pre_hook(lambda *_: decodes.append(1))
    try:
        with pytest.raises(Stop) as raised:
            predictor.predict(request, on_step)
    finally:
        hook.remove()

    assert raised.value is stop
    assert calls == [1, 2]
    assert decodes == []
    # A canceled run leaves nothing behind: the next one gives the usual pixels.
    assert pixels_sha256(predictor.predict(request, no_progress)) == expected


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"width": 1000}, "width must be a multiple of 16 but is 1000. You can use 992 or 1008."),
        ({"height": 250}, "height must be a multiple of 16 but is 250. You can use 240 or 256."),
        ({"seeds": ()}, "seeds is empty"),
        ({"steps": 0}, "steps must be at least 1"),
    ],
)
def test_invalid_requests_fail_before_running(
    predictor: TinyPredictor, changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        predictor.predict(make_request(**changes), no_progress)


def test_tiny_predictor_describes_its_build(predictor: TinyPredictor) -> None:
    assert predictor.build.startswith("tiny/diffusers-")
    assert "/torch-" in predictor.build
    assert predictor.gpu_class == "cpu"


def test_unknown_preset_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="nope") as raised:
        load_predictor("nope", model_path="")

    assert all(preset in str(raised.value) for preset in PRESETS)
    assert set(PRESETS) == {"tiny", "sd3.5-medium", "simulated"}


def test_missing_sd35_weights_say_how_to_get_them() -> None:
    with pytest.raises(RuntimeError) as raised:
        load_predictor("sd3.5-medium", model_path="nobody-farm-test/no-such-model")

    message = str(raised.value)
    assert "'nobody-farm-test/no-such-model'" in message
    assert "hf download stabilityai/stable-diffusion-3.5-medium" in message
    assert "FARM_MODEL_PATH" in message


def test_a_folder_without_model_index_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="has no model_index.json"):
        load_predictor("sd3.5-medium", model_path=str(tmp_path))
