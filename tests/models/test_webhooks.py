"""Webhook events in Postgres: written with their transition, throttled, leased, retried on schedule.

The schedule spans about a day, so its test drives ``decide`` with a clock of its own; everything else
runs on the real database."""

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlalchemy import select

from models import lifecycle
from models.cost import RunCost
from models.db import libpq_url, session_scope
from models.tables import WebhookAttempt, WebhookEvent
from models.webhooks import (
    DEFAULT_RETRY_SCHEDULE,
    EVENTS,
    WEBHOOK_CHANNEL,
    Decision,
    EventState,
    Outcome,
    WebhookFormat,
    WebhookTarget,
    claim_due_events,
    decide,
    finish_attempt,
    parse_schedule,
)
from tests.models.conftest import MakePrediction

LEASE = timedelta(seconds=30)


def hook(events: tuple[str, ...] = EVENTS) -> WebhookTarget:
    return WebhookTarget("https://example.com/hook", events, WebhookFormat.NATIVE)


@pytest.fixture
def prediction_id(new_prediction: MakePrediction) -> str:
    """A queued prediction with a webhook for every event."""
    return new_prediction(webhook=hook())


def events_of(database_url: str, prediction_id: str) -> list[WebhookEvent]:
    with session_scope(database_url) as session:
        query = (
            select(WebhookEvent).where(WebhookEvent.prediction_id == prediction_id).order_by(WebhookEvent.created_at)
        )
        return list(session.scalars(query))


def claimed(database_url: str, prediction_id: str) -> list[str]:
    with session_scope(database_url) as session:
        due = claim_due_events(session, limit=1000, lease=LEASE)
    return [event.event for event in due if event.prediction_id == prediction_id]


def run_to_success(database_url: str, prediction_id: str, beats: int = 0) -> None:
    with session_scope(database_url) as session:
        claim = lifecycle.claim(session, prediction_id=prediction_id, worker="w", lease_seconds=30)
    assert claim is not None
    for step in range(beats):
        with session_scope(database_url) as session:
            lifecycle.heartbeat(session, claim, lease_seconds=30, logs="", step=step, total=beats)
    with session_scope(database_url) as session:
        finished = lifecycle.succeed(
            session,
            claim,
            output_keys=["k"],
            predict_time=1,
            cost=RunCost.of_run(gpu_seconds=1, gpu_class="cpu", gpu_hourly_usd=0),
            logs="",
        )
    assert finished


# --- which transitions make which events ---------------------------------------------------------------


def test_each_transition_writes_its_events_in_order(database_url: str, prediction_id: str) -> None:
    run_to_success(database_url, prediction_id)

    events = events_of(database_url, prediction_id)
    assert [(event.event, event.terminal) for event in events] == [
        ("start", False),
        ("output", True),
        ("completed", True),
    ]
    assert len({event.id for event in events}) == 3 and all(event.id.startswith("msg_") for event in events)


def test_a_rolled_back_transition_leaves_no_event(database_url: str, prediction_id: str) -> None:
    with pytest.raises(RuntimeError), session_scope(database_url) as session:
        assert lifecycle.claim(session, prediction_id=prediction_id, worker="w", lease_seconds=30) is not None
        raise RuntimeError("the claim's transaction fails after its UPDATE")

    assert events_of(database_url, prediction_id) == []


def test_an_event_wakes_the_dispatchers_when_its_transition_commits(database_url: str, prediction_id: str) -> None:
    with psycopg.connect(libpq_url(database_url), autocommit=True) as listener:
        listener.execute(f"LISTEN {WEBHOOK_CHANNEL}")
        with session_scope(database_url) as session:
            assert lifecycle.claim(session, prediction_id=prediction_id, worker="w", lease_seconds=30) is not None
            assert list(listener.notifies(timeout=0.2)) == []  # not before the commit
        assert len(list(listener.notifies(timeout=5, stop_after=1))) == 1

    assert [event.event for event in events_of(database_url, prediction_id)] == ["start"]


def test_heartbeats_closer_than_half_a_second_make_one_progress_event(database_url: str, prediction_id: str) -> None:
    run_to_success(database_url, prediction_id, beats=5)  # milliseconds apart

    assert [event.event for event in events_of(database_url, prediction_id)] == ["start", "output", "completed"]


def test_the_filter_decides_which_events_are_written(database_url: str, new_prediction: MakePrediction) -> None:
    prediction_id = new_prediction(webhook=hook(("completed",)))
    run_to_success(database_url, prediction_id, beats=1)

    assert [event.event for event in events_of(database_url, prediction_id)] == ["completed"]


def test_canceling_a_queued_prediction_writes_completed(database_url: str, prediction_id: str) -> None:
    with session_scope(database_url) as session:
        lifecycle.request_cancel(session, prediction_id=prediction_id)

    assert [event.event for event in events_of(database_url, prediction_id)] == ["completed"]


# --- leases -------------------------------------------------------------------------------------------------


def test_a_claimed_event_is_not_claimed_again_while_its_lease_lasts(database_url: str, prediction_id: str) -> None:
    with session_scope(database_url) as session:
        lifecycle.request_cancel(session, prediction_id=prediction_id)

    assert claimed(database_url, prediction_id) == ["completed"]
    assert claimed(database_url, prediction_id) == []


def test_a_sender_whose_lease_lapsed_cannot_overwrite_the_state(database_url: str, prediction_id: str) -> None:
    with session_scope(database_url) as session:
        lifecycle.request_cancel(session, prediction_id=prediction_id)
    with session_scope(database_url) as session:
        [first] = [e for e in claim_due_events(session, limit=1000, lease=-LEASE) if e.prediction_id == prediction_id]
    with session_scope(database_url) as session:  # the lease (negative: already over) lapsed; another takes it
        [second] = [e for e in claim_due_events(session, limit=1000, lease=LEASE) if e.prediction_id == prediction_id]

    attempt = WebhookAttempt(attempted_at=datetime.now(UTC), latency_ms=1.0, outcome=Outcome.DELIVERED)
    with session_scope(database_url) as session:
        assert not finish_attempt(session, first, Decision(EventState.DELIVERED), attempt)
    with session_scope(database_url) as session:
        assert finish_attempt(session, second, Decision(EventState.FAILED), None)

    [event] = events_of(database_url, prediction_id)
    assert event.state == EventState.FAILED  # the late sender's attempt is logged, its verdict is not applied
    with session_scope(database_url) as session:
        logged = session.scalars(select(WebhookAttempt.outcome).where(WebhookAttempt.event_id == event.id)).all()
    assert logged == [Outcome.DELIVERED]


# --- the retry schedule (a clock of the test's own: it spans a day) ----------------------------------------


def test_a_terminal_event_is_retried_on_the_default_schedule_then_given_up() -> None:
    clock, step, attempts = datetime(2026, 1, 1, tzinfo=UTC), 0, [datetime(2026, 1, 1, tzinfo=UTC)]
    while True:
        decision = decide(
            outcome=Outcome.UNREACHABLE, terminal=True, schedule_step=step, schedule=DEFAULT_RETRY_SCHEDULE, now=clock
        )
        if decision.state is not EventState.PENDING:
            break
        assert decision.next_attempt_at is not None
        clock, step = decision.next_attempt_at, decision.schedule_step
        attempts.append(clock)

    assert decision.state is EventState.FAILED
    gaps = [(later - earlier).total_seconds() for earlier, later in zip(attempts, attempts[1:], strict=False)]
    assert gaps == [5, 300, 1800, 7200, 18000, 36000, 36000]
    assert attempts[-1] - attempts[0] == timedelta(hours=27, minutes=35, seconds=5)


def test_retry_after_is_honoured_when_longer_and_capped() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)

    def due(retry_after: timedelta) -> timedelta:
        decision = decide(
            outcome=Outcome.REJECTED,
            terminal=True,
            schedule_step=0,
            schedule=DEFAULT_RETRY_SCHEDULE,
            now=now,
            retry_after=retry_after,
        )
        assert decision.next_attempt_at is not None
        return decision.next_attempt_at - now

    assert due(timedelta(seconds=1)) == timedelta(seconds=5)  # the schedule's 5 s is longer
    assert due(timedelta(minutes=2)) == timedelta(minutes=2)
    assert due(timedelta(days=30)) == timedelta(hours=24)


@pytest.mark.parametrize(
    ("outcome", "terminal", "state"),
    [
        (Outcome.DELIVERED, True, EventState.DELIVERED),
        (Outcome.GONE, True, EventState.DISABLED),
        (Outcome.BLOCKED, True, EventState.FAILED),  # re-checked at send time: not retried into a private network
        (Outcome.REJECTED, False, EventState.FAILED),  # progress events are best effort: one attempt
        (Outcome.REJECTED, True, EventState.PENDING),
    ],
)
def test_what_each_outcome_leads_to(outcome: Outcome, terminal: bool, state: EventState) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    decision = decide(outcome=outcome, terminal=terminal, schedule_step=0, schedule=DEFAULT_RETRY_SCHEDULE, now=now)
    assert decision.state is state


def test_a_schedule_setting_names_its_bad_entry() -> None:
    assert parse_schedule("0, 5,300") == (0.0, 5.0, 300.0)
    with pytest.raises(ValueError, match="'soon' is not a number"):
        parse_schedule("0,soon")
    with pytest.raises(ValueError, match="negative"):
        parse_schedule("0,-5")
