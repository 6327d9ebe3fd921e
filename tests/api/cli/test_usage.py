"""``farm usage``: the key's totals and per-period rows from GET /v1/usage."""

import json

import pytest

from models.db import session_scope
from models.keys import create_api_key
from tests.api.cli.conftest import client_env, run_farm
from tests.e2e.test_quick_start import create
from tests.farm import Farm

MODEL_PATH = "/v1/models/stability-ai/stable-diffusion-3.5-medium/predictions"


def test_usage_prints_totals_and_periods(farm: Farm) -> None:
    farm.wait(str(create(farm, {"prompt": "counted", "steps": 2})["id"]))

    table = run_farm("usage", env=client_env(farm))
    report = run_farm("usage", "--json", env=client_env(farm))

    assert table.returncode == 0, table.stderr
    assert report.returncode == 0, report.stderr
    body = json.loads(report.stdout)
    assert body["period"] == "day" and body["totals"]["succeeded"] >= 1
    assert "predictions" in table.stdout and "gpu seconds" in table.stdout
    total_row = next(line for line in table.stdout.splitlines() if "total" in line and "│" in line)
    assert str(body["totals"]["predictions"]) in total_row
    assert body["periods"][-1]["start"][:10] in table.stdout


def test_usage_with_a_bad_period_says_which_field(farm: Farm) -> None:
    result = run_farm("usage", "--period", "week", env=client_env(farm))

    assert result.returncode == 1 and "422" in result.stderr and "period" in result.stderr


def test_usage_agrees_with_the_sum_of_the_keys_predictions(farm: Farm) -> None:
    with session_scope(farm.env["FARM_DATABASE_URL"]) as session:
        key = create_api_key(session, name="usage-check")  # a key of its own: its totals are exactly these runs
    with farm.client(key) as client:
        ids = [
            client.post(MODEL_PATH, json={"input": {"prompt": "counted", "steps": 2, "num_images": n}}).json()["id"]
            for n in (1, 2)
        ]
    done = [farm.wait(prediction_id, key=key) for prediction_id in ids]

    report = run_farm("usage", "--json", env=client_env(farm, key))

    assert report.returncode == 0, report.stderr
    totals = json.loads(report.stdout)["totals"]
    assert totals["predictions"] == totals["succeeded"] == 2 and totals["images"] == 3
    for field in ("cost_usd", "price_usd", "gpu_seconds"):
        assert totals[field] == pytest.approx(sum(body["metrics"][field] for body in done), abs=1e-6), field
