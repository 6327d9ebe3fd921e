"""The state machine's compare-and-set transitions on real Postgres."""

from datetime import timedelta

import psycopg
from sqlalchemy import func, select, update

from models import lifecycle
from models.catalog import SD35_MEDIUM
from models.db import libpq_url, session_scope
from models.keys import find_active_key
from models.status import Status
from models.tables import OutboxMessage, Prediction

LEASE_S = 30.0
LEASE_GONE = timedelta(seconds=1)


def status_of(database_url: str, prediction_id: str) -> Prediction:
    with session_scope(database_url) as session:
        prediction = session.get(Prediction, prediction_id)
        assert prediction is not None
        return prediction


def test_create_writes_the_outbox_row_in_the_same_transaction(database_url: str, prediction_id: str) -> None:
    with session_scope(database_url) as session:
        messages = session.scalars(select(OutboxMessage).where(OutboxMessage.prediction_id == prediction_id)).all()
    assert [(m.task_name, m.queue, m.sent_at) for m in messages] == [("farm.render", "sd35-medium", None)]
    assert status_of(database_url, prediction_id).status == Status.STARTING


def test_only_one_of_two_claims_wins(database_url: str, prediction_id: str) -> None:
    with session_scope(database_url) as session:
        first = lifecycle.claim(session, prediction_id=prediction_id, worker="a", lease_seconds=LEASE_S)
    with session_scope(database_url) as session:
        second = lifecycle.claim(session, prediction_id=prediction_id, worker="b", lease_seconds=LEASE_S)
    assert first == lifecycle.Claim(prediction_id, 1)
    assert second is None
    row = status_of(database_url, prediction_id)
    assert (row.status, row.attempt, row.worker) == (Status.PROCESSING, 1, "a")


def test_a_stale_attempt_cannot_finish(database_url: str, prediction_id: str) -> None:
    with session_scope(database_url) as session:
        claim = lifecycle.claim(session, prediction_id=prediction_id, worker="a", lease_seconds=LEASE_S)
    assert claim is not None
    stale = lifecycle.Claim(prediction_id, claim.attempt + 1)
    with session_scope(database_url) as session:
        assert not lifecycle.fail(session, stale, error="late")
        assert lifecycle.fail(session, claim, error="boom")
    with session_scope(database_url) as session:  # terminal states absorb everything
        # A repeat of its own finish (a retry after a lost commit answer) is recognised, and changes nothing.
        assert lifecycle.fail(session, claim, error="again")
        assert lifecycle.heartbeat(session, claim, lease_seconds=LEASE_S, logs="", step=1, total=4) is None
    row = status_of(database_url, prediction_id)
    assert (row.status, row.error) == (Status.FAILED, "boom")


def test_canceled_while_queued_can_never_be_claimed(database_url: str, prediction_id: str) -> None:
    with session_scope(database_url) as session:
        lifecycle.request_cancel(session, prediction_id=prediction_id)
    with session_scope(database_url) as session:
        assert lifecycle.claim(session, prediction_id=prediction_id, worker="a", lease_seconds=LEASE_S) is None
    assert status_of(database_url, prediction_id).status == Status.CANCELED


def test_cancel_while_running_is_seen_by_the_heartbeat(database_url: str, prediction_id: str) -> None:
    with session_scope(database_url) as session:
        claim = lifecycle.claim(session, prediction_id=prediction_id, worker="a", lease_seconds=LEASE_S)
    assert claim is not None
    with session_scope(database_url) as session:
        assert lifecycle.heartbeat(session, claim, lease_seconds=LEASE_S, logs="1/4", step=1, total=4) is False
        lifecycle.request_cancel(session, prediction_id=prediction_id)
    with session_scope(database_url) as session:
        assert lifecycle.heartbeat(session, claim, lease_seconds=LEASE_S, logs="2/4", step=2, total=4) is True
        assert lifecycle.cancel_running(session, claim, predict_time=None, logs="2/4")
    row = status_of(database_url, prediction_id)
    assert (row.status, row.logs, row.output_keys) == (Status.CANCELED, "2/4", None)


def test_a_claim_returns_the_row_as_it_left_it(database_url: str, prediction_id: str) -> None:
    with session_scope(database_url) as session:
        claim = lifecycle.claim(session, prediction_id=prediction_id, worker="a", lease_seconds=LEASE_S)

    assert claim is not None and claim.row is not None
    assert (claim.row.id, claim.row.attempt, claim.row.has_webhook) == (prediction_id, 1, False)
    assert claim.row.input["prompt"] and claim.row.model == SD35_MEDIUM.ref


def test_claims_stop_at_max_attempts(database_url: str, prediction_id: str) -> None:
    with session_scope(database_url) as session:
        session.execute(Prediction.__table__.update().where(Prediction.id == prediction_id).values(attempt=2))
    with session_scope(database_url) as session:
        assert lifecycle.claim(session, prediction_id=prediction_id, worker="a", lease_seconds=LEASE_S) is None
        count = session.scalar(select(func.count()).select_from(Prediction).where(Prediction.id == prediction_id))
    assert count == 1
    assert status_of(database_url, prediction_id).status == Status.STARTING


def test_queued_jobs_wake_the_relay_once_at_commit(database_url: str, api_key: str) -> None:
    with psycopg.connect(libpq_url(database_url), autocommit=True) as listener:
        listener.execute(f"LISTEN {lifecycle.OUTBOX_CHANNEL}")
        with session_scope(database_url) as session:
            key = find_active_key(session, api_key)
            assert key is not None
            for prompt in ("a fox", "a hare"):
                lifecycle.create_prediction(
                    session,
                    lifecycle.NewPrediction(
                        api_key_id=key.id, spec=SD35_MEDIUM, inputs={"prompt": prompt}, seed=1, max_attempts=2
                    ),
                )
            before_commit = list(listener.notifies(timeout=0.2))
        after_commit = list(listener.notifies(timeout=0.5))
    assert before_commit == []
    assert len(after_commit) == 1  # two jobs, one transaction: one wake-up


def test_ending_a_prediction_notifies_waiting_gateways_at_commit(database_url: str, prediction_id: str) -> None:
    with psycopg.connect(libpq_url(database_url), autocommit=True) as listener:
        listener.execute(f"LISTEN {lifecycle.ENDED_CHANNEL}")
        with session_scope(database_url) as session:
            claim = lifecycle.claim(session, prediction_id=prediction_id, worker="a", lease_seconds=LEASE_S)
        assert claim is not None
        assert list(listener.notifies(timeout=0.2)) == []  # claiming ends nothing
        with session_scope(database_url) as session:
            assert lifecycle.fail(session, claim, error="boom")
        payloads = [n.payload for n in listener.notifies(timeout=5, stop_after=1)]
    assert payloads == [prediction_id]


def test_canceling_a_queued_prediction_notifies_too(database_url: str, prediction_id: str) -> None:
    with psycopg.connect(libpq_url(database_url), autocommit=True) as listener:
        listener.execute(f"LISTEN {lifecycle.ENDED_CHANNEL}")
        with session_scope(database_url) as session:
            lifecycle.request_cancel(session, prediction_id=prediction_id)
        payloads = [n.payload for n in listener.notifies(timeout=5, stop_after=1)]
    assert payloads == [prediction_id]


# --- the reaper -----------------------------------------------------------------------------------------


def expire_lease(database_url: str, prediction_id: str) -> None:
    with session_scope(database_url) as session:
        session.execute(
            update(Prediction).where(Prediction.id == prediction_id).values(lease_expires_at=func.now() - LEASE_GONE)
        )


def reap(database_url: str) -> tuple[list[str], list[str]]:
    with session_scope(database_url) as session:
        return lifecycle.reap_expired_leases(session)


def test_an_expired_lease_is_requeued_and_the_old_worker_is_fenced_off(database_url: str, prediction_id: str) -> None:
    with session_scope(database_url) as session:
        old = lifecycle.claim(session, prediction_id=prediction_id, worker="a", lease_seconds=LEASE_S)
    assert old is not None
    expire_lease(database_url, prediction_id)

    requeued, ended = reap(database_url)

    assert prediction_id in requeued and prediction_id not in ended
    row = status_of(database_url, prediction_id)
    assert (row.status, row.attempt, row.worker) == (Status.STARTING, 1, None)
    with session_scope(database_url) as session:
        outbox = session.scalars(select(OutboxMessage).where(OutboxMessage.prediction_id == prediction_id)).all()
        assert len(outbox) == 2  # the create's and the requeue's
        assert lifecycle.heartbeat(session, old, lease_seconds=LEASE_S, logs="", step=1, total=2) is None
    with session_scope(database_url) as session:
        new = lifecycle.claim(session, prediction_id=prediction_id, worker="b", lease_seconds=LEASE_S)
    assert new == lifecycle.Claim(prediction_id, 2)


def test_the_last_attempt_expiring_fails_the_prediction(database_url: str, prediction_id: str) -> None:
    for _ in range(2):  # max_attempts=2
        with session_scope(database_url) as session:
            assert lifecycle.claim(session, prediction_id=prediction_id, worker="a", lease_seconds=LEASE_S)
        expire_lease(database_url, prediction_id)
        requeued, ended = reap(database_url)

    assert prediction_id in ended and prediction_id not in requeued
    row = status_of(database_url, prediction_id)
    assert row.status == Status.FAILED and row.completed_at is not None
    assert row.error is not None and "stopped responding" in row.error and "2 attempt(s)" in row.error


def test_a_live_lease_is_left_alone(database_url: str, prediction_id: str) -> None:
    with session_scope(database_url) as session:
        assert lifecycle.claim(session, prediction_id=prediction_id, worker="a", lease_seconds=LEASE_S)

    requeued, ended = reap(database_url)

    assert prediction_id not in requeued + ended
    assert status_of(database_url, prediction_id).status == Status.PROCESSING


def test_a_dead_worker_with_a_cancel_request_ends_canceled(database_url: str, prediction_id: str) -> None:
    with session_scope(database_url) as session:
        assert lifecycle.claim(session, prediction_id=prediction_id, worker="a", lease_seconds=LEASE_S)
    with session_scope(database_url) as session:
        lifecycle.request_cancel(session, prediction_id=prediction_id)
    expire_lease(database_url, prediction_id)

    assert prediction_id in reap(database_url)[1]
    assert status_of(database_url, prediction_id).status == Status.CANCELED
