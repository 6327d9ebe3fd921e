"""The runner across Postgres faults, on real Postgres: a finalize whose commit landed but whose answer was
lost, and a database that stays away (bounded retries, then the reaper's turn)."""

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from models import lifecycle
from models.catalog import SD35_MEDIUM
from models.db import libpq_url, session_scope
from models.keys import find_active_key
from models.settings import Settings
from models.status import Status
from models.storage import LocalStorage
from models.tables import Prediction, WebhookEvent
from models.webhooks import WebhookFormat, WebhookTarget
from tests.services import free_port
from worker import db_retry
from worker.pipelines import load_predictor
from worker.runner import run_prediction

QUICK = {"prompt": "a fox", "width": 256, "height": 256, "steps": 2, "output_format": "png"}
WEBHOOK = WebhookTarget("https://example.com/hook", ("completed",), WebhookFormat.NATIVE)
INSTANT = load_predictor("simulated", "", simulated_seconds=0)
LOST_ANSWER = psycopg.OperationalError("server closed the connection unexpectedly")


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=database_url, storage_url=str(tmp_path), heartbeat_seconds=0)


@pytest.fixture
def storage(settings: Settings) -> LocalStorage:
    return LocalStorage(Path(settings.storage_url), settings.public_url)


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db_retry, "RETRY_PAUSES_S", (0.01, 0.01))


@pytest.fixture
def prediction_id(database_url: str, api_key: str) -> str:
    with session_scope(database_url) as session:
        key = find_active_key(session, api_key)
        assert key is not None
        return lifecycle.create_prediction(
            session,
            lifecycle.NewPrediction(
                api_key_id=key.id, spec=SD35_MEDIUM, inputs=QUICK, seed=3, max_attempts=3, webhook=WEBHOOK
            ),
        ).id


def lose_the_answer_once(finish: Callable[..., bool]) -> Callable[..., bool]:
    """``finish``, whose first commit reaches Postgres but whose answer is lost with the connection."""
    calls = 0

    def finish_then_drop(session: Session, *args: Any, **kwargs: Any) -> bool:
        nonlocal calls
        calls += 1
        done = finish(session, *args, **kwargs)
        if calls == 1:
            session.commit()
            raise OperationalError("COMMIT", None, LOST_ANSWER)
        return done

    return finish_then_drop


def test_a_finalize_whose_answer_was_lost_is_retried_and_recognised(
    settings: Settings, storage: LocalStorage, prediction_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lifecycle, "succeed", lose_the_answer_once(lifecycle.succeed))

    status = run_prediction(
        prediction_id,
        settings=settings,
        predictor=INSTANT,
        storage=storage,
    )

    assert status is Status.SUCCEEDED  # not "claim lost": the retry found its own attempt's success
    with session_scope(settings.database_url) as session:
        row = session.get(Prediction, prediction_id)
        assert row is not None and (row.status, row.attempt) == (Status.SUCCEEDED, 1)
        events = session.scalar(select(func.count()).where(WebhookEvent.prediction_id == prediction_id))
    assert events == 1


def test_a_database_that_stays_away_at_finalize_is_left_to_the_reaper(
    settings: Settings,
    storage: LocalStorage,
    prediction_id: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def unreachable(*_: object, **__: object) -> bool:
        raise OperationalError("UPDATE", None, psycopg.OperationalError("connection refused"))

    monkeypatch.setattr(lifecycle, "succeed", unreachable)
    caplog.set_level(logging.WARNING, "farm.worker")

    status = run_prediction(
        prediction_id,
        settings=settings,
        predictor=INSTANT,
        storage=storage,
    )

    assert status is None
    with session_scope(settings.database_url) as session:
        row = session.get(Prediction, prediction_id)
        assert row is not None and (row.status, row.attempt) == (Status.PROCESSING, 1)  # its lease will run out
    assert sum("database unreachable" in message for message in caplog.messages) == len(db_retry.RETRY_PAUSES_S)
    assert any("cannot record the end of attempt 1" in message for message in caplog.messages)


def test_a_database_that_stays_away_at_claim_drops_the_delivery(storage: LocalStorage, prediction_id: str) -> None:
    nowhere = Settings(database_url=f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/farm", storage_url="x")

    status = run_prediction(prediction_id, settings=nowhere, predictor=INSTANT, storage=storage)

    assert status is None  # the message is acknowledged; the reconciler publishes the prediction again


def test_pooled_connections_a_restart_killed_cost_one_retry_not_the_job(
    settings: Settings, storage: LocalStorage, prediction_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The worker's pool holds connections from earlier transactions (it checks none with a ping before use).
    db_retry.retrying(settings.database_url, "warm", lambda session: session.execute(select(1)))
    with psycopg.connect(libpq_url(settings.database_url), autocommit=True) as admin:
        # As a Postgres restart would: every other connection to this test database ends.
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    caplog.set_level(logging.WARNING, "farm.worker")

    status = run_prediction(prediction_id, settings=settings, predictor=INSTANT, storage=storage)

    assert status is Status.SUCCEEDED
    with session_scope(settings.database_url) as session:
        row = session.get(Prediction, prediction_id)
        assert row is not None and (row.status, row.attempt) == (Status.SUCCEEDED, 1)
    # The dead connection failed the claim's first statement once; the retry found the pool renewed.
    assert sum("database unreachable" in message for message in caplog.messages) == 1
