"""Idempotency-Key on creates, through HTTP: a retry gets the first prediction, a changed request is
refused, concurrent duplicates make one job, keys are per API key, and a record expires."""

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from uuid import uuid4

from sqlalchemy import func, select, update

from models.db import session_scope
from models.tables import IdempotencyKey, Prediction
from tests.farm import Farm

MODEL_PATH = "/v1/models/stability-ai/stable-diffusion-3.5-medium/predictions"
JOB = {"input": {"prompt": "a fox", "seed": 3}}


def create(farm: Farm, body: dict[str, object], idempotency_key: str, key: str | None = None) -> tuple[int, dict]:  # type: ignore[type-arg]
    with farm.client(key) as client:
        response = client.post(MODEL_PATH, json=body, headers={"Idempotency-Key": idempotency_key})
    return response.status_code, response.json()


def predictions_count(farm: Farm) -> int:
    with session_scope(farm.env["FARM_DATABASE_URL"]) as session:
        return int(session.scalar(select(func.count()).select_from(Prediction)) or 0)


def test_a_retry_gets_the_first_prediction_and_makes_no_second_job(gateway: Farm) -> None:
    idempotency_key = str(uuid4())
    first_code, first = create(gateway, JOB, idempotency_key)
    before = predictions_count(gateway)
    second_code, second = create(gateway, JOB, idempotency_key)

    assert first_code == second_code == 201
    assert second["id"] == first["id"]
    assert predictions_count(gateway) == before


def test_the_same_key_with_another_request_is_refused(gateway: Farm) -> None:
    idempotency_key = str(uuid4())
    create(gateway, JOB, idempotency_key)
    before = predictions_count(gateway)
    code, body = create(gateway, {"input": {"prompt": "a wolf"}}, idempotency_key)

    assert code == 422
    assert body["errors"][0]["field"] == "Idempotency-Key" and "different request" in body["detail"]
    assert predictions_count(gateway) == before


def test_concurrent_duplicates_make_one_job(gateway: Farm) -> None:
    idempotency_key = str(uuid4())
    before = predictions_count(gateway)
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: create(gateway, JOB, idempotency_key), range(10)))

    assert {code for code, _ in answers} == {201}
    assert len({body["id"] for _, body in answers}) == 1
    assert predictions_count(gateway) == before + 1


def test_keys_are_scoped_per_api_key(gateway: Farm) -> None:
    idempotency_key = str(uuid4())
    _, mine = create(gateway, JOB, idempotency_key)
    _, theirs = create(gateway, JOB, idempotency_key, key=gateway.other_key)

    assert mine["id"] != theirs["id"]


def test_an_expired_key_starts_a_new_request(gateway: Farm) -> None:
    idempotency_key = str(uuid4())
    _, first = create(gateway, JOB, idempotency_key)
    with session_scope(gateway.env["FARM_DATABASE_URL"]) as session:  # a day and a bit later
        session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.key == idempotency_key)
            .values(created_at=IdempotencyKey.created_at - timedelta(hours=25))
        )
    code, again = create(gateway, {"input": {"prompt": "something else"}}, idempotency_key)

    assert code == 201 and again["id"] != first["id"]


def test_an_overlong_key_names_the_header(gateway: Farm) -> None:
    code, body = create(gateway, JOB, "k" * 300)
    assert code == 422 and body["errors"][0]["field"] == "Idempotency-Key"
