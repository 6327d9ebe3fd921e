"""``farm predict``, ``farm get`` and ``farm cancel`` against the running farm."""

import json
from pathlib import Path
from typing import Any

from PIL import Image

from tests.api.cli.conftest import client_env, run_farm
from tests.e2e.test_quick_start import create
from tests.e2e.test_running_predictions import LONG
from tests.farm import Farm


def test_predict_saves_the_image_and_prints_seed_and_cost(farm: Farm, tmp_path: Path) -> None:
    result = run_farm(
        "predict",
        "a red fox in snow",
        "--aspect-ratio",
        "16:9",
        "--seed",
        "7",
        "--steps",
        "4",
        "-o",
        "out.webp",
        env=client_env(farm),
        cwd=tmp_path,
    )

    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "out.webp") as image:
        assert (image.format, image.size) == ("WEBP", (1344, 768))
    first_line = result.stdout.splitlines()[0]
    assert first_line.startswith("succeeded  id ") and "seed 7" in first_line and "cost $" in first_line
    assert "saved out.webp" in result.stdout
    assert "4/4" in result.stderr  # the progress bar, fed by the stream, reached the last step
    prediction_id = first_line.split()[2]
    with farm.client() as client:
        recorded = client.get(f"/v1/predictions/{prediction_id}").json()
    # Only what was asked for; the -o suffix chose the format.
    expected = {"prompt": "a red fox in snow", "aspect_ratio": "16:9", "seed": 7, "steps": 4, "output_format": "webp"}
    assert recorded["input"] == expected


def test_predict_uploads_a_local_init_image_and_saves_each_image(farm: Farm, tmp_path: Path) -> None:
    Image.new("RGB", (300, 200), (200, 80, 40)).save(tmp_path / "photo.png")

    result = run_farm(
        "predict",
        "the same, in watercolour",
        "--image",
        "photo.png",
        "--prompt-strength",
        "0.5",
        "--steps",
        "4",
        "--num-images",
        "2",
        "-o",
        "pics/fox.png",
        env=client_env(farm),
        cwd=tmp_path,
    )

    assert result.returncode == 0, result.stderr
    for n in (0, 1):
        with Image.open(tmp_path / "pics" / f"fox-{n}.png") as image:
            # The suffix chose the format; the init image's 3:2 shape near one megapixel chose the size.
            assert (image.format, image.size) == ("PNG", (1280, 832))
    assert "saved pics/fox-0.png" in result.stdout and "saved pics/fox-1.png" in result.stdout


def test_predict_with_a_bad_value_says_which_field(farm: Farm, tmp_path: Path) -> None:
    result = run_farm("predict", "a fox", "--steps", "500", env=client_env(farm), cwd=tmp_path)

    assert result.returncode == 1
    assert "422" in result.stderr and "input.steps" in result.stderr and "50" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_get_shows_status_seed_and_outputs(farm: Farm) -> None:
    prediction_id = str(create(farm, {"prompt": "a lighthouse", "steps": 2, "seed": 11})["id"])
    done = farm.wait(prediction_id)

    shown = run_farm("get", prediction_id, env=client_env(farm))
    as_json = run_farm("get", prediction_id, "--json", env=client_env(farm))

    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"succeeded  id {prediction_id}  seed 11")
    assert unsigned(done["output"][0]) + "?expires=" in shown.stdout
    assert as_json.returncode == 0, as_json.stderr
    assert with_unsigned_outputs(json.loads(as_json.stdout)) == with_unsigned_outputs(done)


def unsigned(url: str) -> str:
    return url.split("?", 1)[0]


def with_unsigned_outputs(prediction: dict[str, Any]) -> dict[str, Any]:
    """Output URLs without their signature: each read signs anew, and the expiry moves in steps, so two reads
    of one prediction can differ there."""
    return {**prediction, "output": [unsigned(url) for url in prediction["output"]]}


def test_get_of_unknown_id_or_with_a_wrong_key_fails_with_the_farms_words(farm: Farm) -> None:
    unknown = run_farm("get", "no-such-prediction", env=client_env(farm))
    wrong_key = run_farm("get", "no-such-prediction", env=client_env(farm, key="farm_wrong"))

    assert unknown.returncode == 1 and "404" in unknown.stderr and "not found" in unknown.stderr
    assert wrong_key.returncode == 1 and "401" in wrong_key.stderr and "Invalid or revoked API key" in wrong_key.stderr


def test_cancel_ends_the_prediction_canceled(farm: Farm) -> None:
    prediction_id = str(create(farm, LONG)["id"])

    result = run_farm("cancel", prediction_id, env=client_env(farm))

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{prediction_id} cancel")  # "canceled" or "cancel requested"
    assert farm.wait(prediction_id)["status"] == "canceled"
