"""Claiming queued predictions to batch with a lead's: which are taken, on real Postgres."""

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select, text

from models import lifecycle
from models.db import session_scope
from models.status import Status
from models.tables import Prediction
from tests.models.conftest import MakePrediction

LEASE_S = 30.0
Queue = Callable[..., str]


@pytest.fixture
def marker() -> str:
    """A prompt only this test's predictions carry, so that the queue's other rows never fit."""
    return f"batch-{uuid.uuid4().hex}"


@pytest.fixture
def queue(new_prediction: MakePrediction, marker: str) -> Queue:
    """Queue a prediction with this test's prompt (plus `extra`), optionally as image-to-image."""
    return lambda extra="", image_key=None: new_prediction({"prompt": marker + extra}, image_key)


def claim_lead(database_url: str, prediction_id: str) -> lifecycle.Claim:
    with session_scope(database_url) as session:
        claim = lifecycle.claim(session, prediction_id=prediction_id, worker="w", lease_seconds=LEASE_S)
    assert claim is not None
    return claim


def ours(marker: str) -> Callable[[dict[str, Any], int], bool]:
    return lambda inputs, seed: inputs["prompt"].startswith(marker) and "misfit" not in inputs["prompt"]


def test_companions_are_the_oldest_queued_that_fit(database_url: str, queue: Queue, marker: str) -> None:
    lead = claim_lead(database_url, queue())
    misfit, image_to_image = queue(" misfit"), queue(image_key="inputs/x.png")
    first, second, third = queue(), queue(), queue()
    with session_scope(database_url) as session:
        claims = lifecycle.claim_companions(
            session, lead=lead, worker="w", lease_seconds=LEASE_S, limit=2, fits=ours(marker)
        )
    assert [(claim.prediction_id, claim.attempt) for claim in claims] == [(first, 1), (second, 1)]
    with session_scope(database_url) as session:
        statuses = dict(
            session.execute(
                select(Prediction.id, Prediction.status).where(
                    Prediction.id.in_([misfit, image_to_image, first, second, third])
                )
            ).all()
        )
    assert statuses == {
        misfit: Status.STARTING,
        image_to_image: Status.STARTING,
        first: Status.PROCESSING,
        second: Status.PROCESSING,
        third: Status.STARTING,
    }


def test_a_row_another_worker_is_claiming_is_skipped_not_waited_for(
    database_url: str, queue: Queue, marker: str
) -> None:
    lead = claim_lead(database_url, queue())
    busy, free = queue(), queue()
    with session_scope(database_url) as other_worker:
        # Another worker's claim of `busy` is under way: it holds the row's lock until it commits.
        other_worker.execute(select(Prediction.id).where(Prediction.id == busy).with_for_update())
        with session_scope(database_url) as session:
            session.execute(text("SET LOCAL lock_timeout = '5s'"))  # waiting would fail the test, not hang it
            claims = lifecycle.claim_companions(
                session, lead=lead, worker="w", lease_seconds=LEASE_S, limit=2, fits=ours(marker)
            )
    assert [claim.prediction_id for claim in claims] == [free]
