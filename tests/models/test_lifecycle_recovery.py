"""Transitions that recover from faults, on real Postgres: a finish retried after its commit's answer was
lost, and the failure a worker's parent records for a pool child killed at the hard time limit."""

from collections.abc import Iterator

import pytest
from sqlalchemy import func, select, update

from models import lifecycle
from models.catalog import SD35_MEDIUM
from models.cost import RunCost
from models.db import session_scope
from models.keys import find_active_key
from models.status import Status
from models.tables import Prediction, WebhookEvent
from models.webhooks import WebhookFormat, WebhookTarget

LEASE_S = 30.0
COST = RunCost.of_run(gpu_seconds=1.0, gpu_class="cpu", gpu_hourly_usd=2.0, price_usd=0.01)
WEBHOOK = WebhookTarget("https://example.com/hook", ("completed",), WebhookFormat.NATIVE)


@pytest.fixture
def prediction_id(database_url: str, api_key: str) -> Iterator[str]:
    with session_scope(database_url) as session:
        key = find_active_key(session, api_key)
        assert key is not None
        prediction = lifecycle.create_prediction(
            session,
            lifecycle.NewPrediction(
                api_key_id=key.id, spec=SD35_MEDIUM, inputs={"prompt": "x"}, seed=1, max_attempts=2, webhook=WEBHOOK
            ),
        )
    yield prediction.id


def claimed(database_url: str, prediction_id: str, worker: str = "host:1") -> lifecycle.Claim:
    with session_scope(database_url) as session:
        claim = lifecycle.claim(session, prediction_id=prediction_id, worker=worker, lease_seconds=LEASE_S)
    assert claim is not None
    return claim


def succeed(database_url: str, claim: lifecycle.Claim) -> bool:
    with session_scope(database_url) as session:
        return lifecycle.succeed(
            session, claim, output_keys=[f"outputs/{claim.prediction_id}/1/0.png"], predict_time=1.0, cost=COST, logs=""
        )


def completed_events(database_url: str, prediction_id: str) -> int:
    with session_scope(database_url) as session:
        query = select(func.count()).where(
            WebhookEvent.prediction_id == prediction_id, WebhookEvent.event == "completed"
        )
        return int(session.scalar(query) or 0)


def row(database_url: str, prediction_id: str) -> Prediction:
    with session_scope(database_url) as session:
        found = session.get(Prediction, prediction_id)
        assert found is not None
        return found


def test_a_finish_retried_after_an_ambiguous_commit_recognises_itself(database_url: str, prediction_id: str) -> None:
    claim = claimed(database_url, prediction_id)
    assert succeed(database_url, claim)
    first = row(database_url, prediction_id)

    assert succeed(database_url, claim)  # the retry: the commit had landed, only its answer was lost

    again = row(database_url, prediction_id)
    assert (again.status, again.attempt, again.completed_at) == (Status.SUCCEEDED, 1, first.completed_at)
    assert completed_events(database_url, prediction_id) == 1  # still one terminal transition


def test_another_outcome_of_the_same_attempt_is_not_mistaken_for_its_own(database_url: str, prediction_id: str) -> None:
    claim = claimed(database_url, prediction_id)
    with session_scope(database_url) as session:
        assert lifecycle.fail(session, claim, error="boom")

    assert not succeed(database_url, claim)
    assert row(database_url, prediction_id).status == Status.FAILED


def test_a_later_attempts_finish_is_not_an_earlier_claims(database_url: str, prediction_id: str) -> None:
    claim = claimed(database_url, prediction_id)
    newer = lifecycle.Claim(prediction_id, claim.attempt + 1)
    assert succeed(database_url, claim)

    assert not succeed(database_url, newer)


def test_a_child_killed_at_the_hard_limit_is_failed_by_its_worker_name(database_url: str, prediction_id: str) -> None:
    claimed(database_url, prediction_id, worker="host:41")
    with session_scope(database_url) as session:
        assert not lifecycle.fail_killed_run(session, prediction_id=prediction_id, worker="host:42", error="x")
        assert lifecycle.fail_killed_run(session, prediction_id=prediction_id, worker="host:41", error="too long")

    done = row(database_url, prediction_id)
    assert (done.status, done.error, done.lease_expires_at) == (Status.FAILED, "too long", None)
    assert completed_events(database_url, prediction_id) == 1


def test_a_killed_child_whose_prediction_moved_on_changes_nothing(database_url: str, prediction_id: str) -> None:
    claimed(database_url, prediction_id, worker="host:41")
    with session_scope(database_url) as session:  # its lease ran out, the reaper requeued it, another worker took it
        session.execute(update(Prediction).where(Prediction.id == prediction_id).values(lease_expires_at=func.now()))
    with session_scope(database_url) as session:
        assert lifecycle.reap_expired_leases(session)[0] == [prediction_id]
    claimed(database_url, prediction_id, worker="host:77")

    with session_scope(database_url) as session:
        assert not lifecycle.fail_killed_run(session, prediction_id=prediction_id, worker="host:41", error="x")
    moved_on = row(database_url, prediction_id)
    assert (moved_on.status, moved_on.attempt, moved_on.worker) == (Status.PROCESSING, 2, "host:77")
