"""Per-key limits through HTTP: request rates counted in Redis across gateway processes, the cap on
unfinished predictions (exact under races), and the monthly spend cap. The `gateway` fixture has no
worker, so predictions stay unfinished."""

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from models.db import session_scope
from models.keys import create_api_key
from models.settings import Settings
from models.tables import ApiKey, Prediction
from tests.farm import Farm, extra_gateway

MODEL_PATH = "/v1/models/stability-ai/stable-diffusion-3.5-medium/predictions"
JOB = {"input": {"prompt": "a fox"}}


def new_key(farm: Farm, **limits: Any) -> str:
    """A fresh key with limits of its own (columns of api_keys)."""
    with session_scope(farm.env["FARM_DATABASE_URL"]) as session:
        key = create_api_key(session, name="limited")
        session.execute(update(ApiKey).where(ApiKey.key_prefix == key[:9]).values(**limits))
    return key


def unfinished_of(farm: Farm, key: str) -> int:
    with session_scope(farm.env["FARM_DATABASE_URL"]) as session:
        key_id = session.scalar(select(ApiKey.id).where(ApiKey.key_prefix == key[:9]))
        query = select(func.count()).select_from(Prediction).where(Prediction.api_key_id == key_id)
        return int(session.scalar(query) or 0)


@pytest.fixture(scope="module")
def second_gateway(gateway: Farm) -> Iterator[Farm]:
    with extra_gateway(gateway, {}, "gateway-2") as running:
        yield running


def test_the_defaults_are_60_creates_and_3000_reads_a_minute_and_10_unfinished() -> None:
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (defaults.create_rate_limit_per_minute, defaults.read_rate_limit_per_minute) == (60, 3000)
    assert defaults.max_unfinished_per_key == 10


def test_a_keys_rate_is_shared_by_every_gateway_process(gateway: Farm, second_gateway: Farm) -> None:
    key = new_key(gateway, rate_limit_per_minute=5)
    answers = []
    for farm in (gateway, second_gateway, gateway, second_gateway, gateway, second_gateway):
        with farm.client(key) as client:
            answers.append(client.get("/v1/predictions"))

    assert [a.status_code for a in answers] == [200] * 5 + [429]
    assert [a.headers["X-RateLimit-Remaining"] for a in answers[:5]] == ["4", "3", "2", "1", "0"]
    assert all(a.headers["X-RateLimit-Limit"] == "5" for a in answers)
    refused = answers[-1]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "5" in refused.json()["detail"] and "Retry in" in refused.json()["detail"]
    with gateway.client(gateway.other_key) as client:  # another key has its own budget
        assert client.get("/v1/predictions").status_code == 200


def test_twenty_parallel_creates_against_a_cap_of_ten_admit_exactly_ten(gateway: Farm) -> None:
    key = new_key(gateway, max_unfinished=10)

    def create(_: int) -> int:
        with gateway.client(key) as client:
            return client.post(MODEL_PATH, json=JOB).status_code

    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(create, range(20)))

    assert sorted(codes) == [201] * 10 + [429] * 10
    assert unfinished_of(gateway, key) == 10
    with gateway.client(key) as client:
        refused = client.post(MODEL_PATH, json=JOB)
        assert refused.status_code == 429 and "10 unfinished predictions" in refused.json()["detail"]
        # Ending one frees a place.
        first = client.get("/v1/predictions").json()["results"][0]["id"]
        assert client.post(f"/v1/predictions/{first}/cancel").json()["status"] == "canceled"
        assert client.post(MODEL_PATH, json=JOB).status_code == 201


def test_a_spent_monthly_cap_refuses_creates_and_nothing_else(gateway: Farm) -> None:
    key = new_key(gateway, monthly_spend_cap_usd=0.0)
    with gateway.client(key) as client:
        refused = client.post(MODEL_PATH, json=JOB)
        listed = client.get("/v1/predictions")

    assert refused.status_code == 402 and "spend cap" in refused.json()["detail"]
    assert listed.status_code == 200
    assert unfinished_of(gateway, key) == 0


def test_limits_apply_on_every_front_door(gateway: Farm) -> None:
    key = new_key(gateway, max_unfinished=1)
    with httpx.Client(base_url=gateway.url, headers={"Authorization": f"Key {key}"}, timeout=30) as client:
        assert client.post("/fal-ai/stable-diffusion-v35-medium", json={"prompt": "a fox"}).status_code == 200
        fal = client.post("/fal-ai/stable-diffusion-v35-medium", json={"prompt": "a fox"})
        eachlabs = client.post(
            "/v1/prediction/", json={"model": "stable-diffusion-3.5-medium", "input": {"prompt": "x"}}
        )
    assert fal.status_code == 429 and "unfinished" in fal.json()["detail"]
    assert eachlabs.status_code == 429
