"""GET /v1/usage over HTTP: it agrees with the per-prediction costs GET /v1/predictions/{id} shows, per key."""

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from models.db import session_scope
from models.keys import create_api_key
from tests.farm import JOB_TIMEOUT_S, TERMINAL, Farm

MODEL_PATH = "/v1/models/stability-ai/stable-diffusion-3.5-medium/predictions"
SUMMED = ("gpu_seconds", "cost_usd", "price_usd")


def fresh_key(farm: Farm, name: str) -> str:
    """A key with no history, so its usage holds exactly what a test makes with it."""
    with session_scope(farm.env["FARM_DATABASE_URL"]) as session:
        return create_api_key(session, name=name)


def create(farm: Farm, key: str, inputs: dict[str, Any]) -> str:
    with farm.client(key) as client:
        response = client.post(MODEL_PATH, json={"input": inputs})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def finished(farm: Farm, key: str, prediction_id: str) -> dict[str, Any]:
    """The prediction once it ended, polled as its owner polls it."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    with farm.client(key) as client:
        while time.monotonic() < deadline:
            body = dict(client.get(f"/v1/predictions/{prediction_id}").json())
            if body["status"] in TERMINAL:
                return body
            time.sleep(0.05)  # a client's polling interval
    raise AssertionError(f"{prediction_id} still {body['status']}; logs:\n{farm.tail_logs()}")


def usage(farm: Farm, key: str, **params: str) -> dict[str, Any]:
    with farm.client(key) as client:
        response = client.get("/v1/usage", params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def expected_totals(bodies: list[dict[str, Any]]) -> dict[str, Any]:
    """What the usage totals must be: the sums over the predictions as GET shows them."""
    totals: dict[str, Any] = {"predictions": len(bodies), "succeeded": 0, "failed": 0, "canceled": 0}
    for body in bodies:
        totals[body["status"]] += 1
    totals["images"] = sum(len(body["output"] or []) for body in bodies)
    for name in SUMMED:
        totals[name] = sum(body["metrics"].get(name, 0.0) for body in bodies)
    return totals


def assert_figures(got: dict[str, Any], expected: dict[str, Any]) -> None:
    assert {name: got[name] for name in ("predictions", "succeeded", "failed", "canceled", "images")} == {
        name: expected[name] for name in ("predictions", "succeeded", "failed", "canceled", "images")
    }
    for name in SUMMED:
        assert got[name] == pytest.approx(expected[name], rel=1e-6, abs=1e-8), name


def test_usage_totals_equal_the_sum_of_each_predictions_cost_and_stay_per_key(farm: Farm) -> None:
    mine, theirs = fresh_key(farm, "usage-mine"), fresh_key(farm, "usage-theirs")
    jobs = [
        {"prompt": "two small foxes", "width": 256, "height": 256, "num_images": 2, "steps": 2},
        {"prompt": "a wide fox", "width": 512, "height": 256, "steps": 2},
        {"prompt": "a square fox", "aspect_ratio": "1:1", "steps": 2},
    ]
    ids = [create(farm, mine, job) for job in jobs]
    # Canceled at once: it ends canceled in the queue, or mid-run with its GPU time recorded.
    canceled = create(farm, mine, {"prompt": "a slow fox", "width": 1024, "height": 1024, "steps": 50})
    with farm.client(mine) as client:
        assert client.post(f"/v1/predictions/{canceled}/cancel").status_code == 200
    other = create(farm, theirs, {"prompt": "someone else's fox", "width": 256, "height": 256, "steps": 2})
    bodies = [finished(farm, mine, prediction_id) for prediction_id in [*ids, canceled]]
    their_body = finished(farm, theirs, other)

    # Each run records its GPU time, cost at the worker's hourly price, and price under the model's rule.
    for body, job in zip(bodies, jobs, strict=False):
        assert body["status"] == "succeeded", body["error"]
        metrics = body["metrics"]
        assert metrics["cost_usd"] == pytest.approx(metrics["gpu_seconds"] * metrics["gpu_hourly_usd"] / 3600, rel=1e-3)
        width, height = (1024, 1024) if "aspect_ratio" in job else (job["width"], job["height"])
        assert metrics["price_usd"] == round(0.02 * width * height * job.get("num_images", 1) / 1e6, 8)
    assert bodies[-1]["status"] in ("canceled", "succeeded")
    if bodies[-1]["status"] == "canceled" and bodies[-1]["started_at"]:
        assert bodies[-1]["metrics"]["gpu_seconds"] > 0 and bodies[-1]["metrics"]["price_usd"] == 0

    since = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()  # yesterday: two daily periods
    report = usage(farm, mine, since=since)
    assert report["period"] == "day"
    assert report["since"] == f"{since}T00:00:00.000000Z"
    assert_figures(report["totals"], expected_totals(bodies))
    assert report["totals"]["predictions"] == 4
    assert len(report["periods"]) == 2
    assert [period["start"][10:] for period in report["periods"]] == ["T00:00:00.000000Z"] * 2
    for name in ("predictions", "images", *SUMMED):
        assert sum(period[name] for period in report["periods"]) == pytest.approx(report["totals"][name])

    # The other key's usage holds its own prediction only, and the first key's holds none of it.
    assert_figures(usage(farm, theirs, since=since)["totals"], expected_totals([their_body]))


def test_usage_defaults_to_this_month_by_day(gateway: Farm) -> None:
    key = fresh_key(gateway, "usage-defaults")
    create(gateway, key, {"prompt": "a queued fox"})  # no worker here: it stays queued, still counted
    report = usage(gateway, key)

    now = datetime.now(UTC)
    assert report["since"] == now.strftime("%Y-%m-01T00:00:00.000000Z")
    assert abs(datetime.fromisoformat(report["until"]) - now) < timedelta(minutes=1)
    assert report["period"] == "day"
    assert [period["start"] for period in report["periods"]] == [
        (now.replace(day=day)).strftime("%Y-%m-%dT00:00:00.000000Z") for day in range(1, now.day + 1)
    ]
    assert report["totals"] == {
        "predictions": 1,
        "succeeded": 0,
        "failed": 0,
        "canceled": 0,
        "images": 0,
        "gpu_seconds": 0.0,
        "cost_usd": 0.0,
        "price_usd": 0.0,
    }
    assert report["periods"][-1]["predictions"] == 1


def test_usage_by_month_lists_every_month_of_the_range(gateway: Farm) -> None:
    key = fresh_key(gateway, "usage-months")
    report = usage(gateway, key, since="2026-01-15T12:00:00+02:00", until="2026-04-01", period="month")

    assert report["since"] == "2026-01-15T10:00:00.000000Z"
    assert report["until"] == "2026-04-01T00:00:00.000000Z"
    assert [period["start"] for period in report["periods"]] == [
        "2026-01-01T00:00:00.000000Z",
        "2026-02-01T00:00:00.000000Z",
        "2026-03-01T00:00:00.000000Z",
    ]
    assert all(period["predictions"] == 0 for period in report["periods"])


@pytest.mark.parametrize(
    ("params", "field", "says"),
    [
        ({"since": "last tuesday"}, "since", "ISO 8601"),
        ({"until": "2026-13-01"}, "until", "ISO 8601"),
        ({"since": "2026-03-01", "until": "2026-02-01"}, "until", "later than since"),
        ({"period": "week"}, "period", "'day' or 'month'"),
        ({"since": "2024-01-01", "until": "2026-01-01"}, "period", "period=month"),
    ],
)
def test_bad_usage_parameters_are_422_naming_the_field(
    gateway: Farm, params: dict[str, str], field: str, says: str
) -> None:
    with gateway.client() as client:
        response = client.get("/v1/usage", params=params)
    assert response.status_code == 422, response.text
    body = response.json()
    assert [error["field"] for error in body["errors"]] == [field]
    assert says in body["detail"]


def test_usage_needs_a_key(gateway: Farm) -> None:
    with gateway.client("farm_not-a-key") as client:
        assert client.get("/v1/usage").status_code == 401
