"""Webhook events in Postgres: which transitions make which events, the retry schedule, and the
dispatcher's bookkeeping (claim due events under a lease, record each attempt).

An event row is written in the transaction of the state change that causes it, so a committed
transition always has its event and a rolled-back one never does. Terminal events are retried on
the schedule kept here for days; progress events (start, logs) are sent once, best effort.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import and_, func, insert, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from models.tables import DisabledWebhookUrl, Prediction, WebhookAttempt, WebhookEvent

# Replicate's events: start (claimed), output (outputs written), logs (progress), completed (terminal).
EVENTS = ("start", "output", "logs", "completed")
# Dispatchers listen here; NOTIFY is delivered at commit, so they never see an uncommitted event.
WEBHOOK_CHANNEL = "farm_webhooks"
WAKE_DISPATCHERS = func.pg_notify(WEBHOOK_CHANNEL, "")
# At most one progress event per prediction in this window (Replicate's throttle).
PROGRESS_THROTTLE = timedelta(milliseconds=500)
# Svix's schedule: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (about 27.5 h in all).
DEFAULT_RETRY_SCHEDULE = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
# A receiver's Retry-After is honoured up to this long.
MAX_RETRY_AFTER = timedelta(hours=24)


class WebhookFormat(StrEnum):
    """The payload's shape, after the front door the prediction came through."""

    NATIVE = "native"  # the prediction object as GET /v1/predictions/{id} returns it
    FAL = "fal"  # fal's {request_id, status: OK|ERROR, payload, error}
    EACHLABS = "eachlabs"  # GET /v1/prediction/{id} of the Eachlabs door


class EventState(StrEnum):
    PENDING = "pending"  # due at next_attempt_at (or in flight until then)
    DELIVERED = "delivered"
    FAILED = "failed"  # every scheduled attempt failed, or a progress event's one attempt did
    SKIPPED = "skipped"  # a progress event overtaken by a later one, or by the end
    DISABLED = "disabled"  # the URL answered 410 Gone


class Outcome(StrEnum):
    """What one attempt came to."""

    DELIVERED = "delivered"  # 2xx
    REJECTED = "rejected"  # another status: 3xx (never followed), 4xx, 5xx
    UNREACHABLE = "unreachable"  # no answer: connection refused, timeout, TLS
    BLOCKED = "blocked"  # the URL now resolves into a network the farm may not reach
    GONE = "gone"  # 410: the receiver asks never to be called again


@dataclass(frozen=True)
class WebhookTarget:
    """A prediction's webhook as accepted: where, which events, in which shape."""

    url: str
    events: tuple[str, ...]
    format: WebhookFormat


@dataclass(frozen=True)
class DueEvent:
    """An event a dispatcher claimed, held until ``lease_until`` (its due time, moved past the send)."""

    id: str
    prediction_id: str
    api_key_id: int
    event: str
    url: str
    format: WebhookFormat
    terminal: bool
    schedule_step: int
    created_at: datetime
    lease_until: datetime


@dataclass(frozen=True)
class Decision:
    """An event's state after an attempt: its next due time while still pending."""

    state: EventState
    next_attempt_at: datetime | None = None
    schedule_step: int = 0


def parse_schedule(text: str) -> tuple[float, ...]:
    """``"0,5,300"`` → delays in seconds before each attempt; raises ValueError naming a bad entry."""
    delays = []
    for entry in (part.strip() for part in text.split(",")):
        try:
            delay = float(entry)
        except ValueError:
            raise ValueError(f"{entry!r} is not a number of seconds: write delays like 0,5,300") from None
        if delay < 0:
            raise ValueError(f"{entry!r} is negative: delays are seconds from the previous attempt")
        delays.append(delay)
    return tuple(delays)


def decide(
    *,
    outcome: Outcome,
    terminal: bool,
    schedule_step: int,
    schedule: Sequence[float],
    now: datetime,
    retry_after: timedelta | None = None,
) -> Decision:
    """The event's next state. A failed terminal event waits for the schedule's next delay (or the
    receiver's Retry-After, when longer) until the schedule runs out; a progress event is not retried."""
    if outcome is Outcome.DELIVERED:
        return Decision(EventState.DELIVERED)
    if outcome is Outcome.GONE:
        return Decision(EventState.DISABLED)
    next_step = schedule_step + 1
    if outcome is Outcome.BLOCKED or not terminal or next_step >= len(schedule):
        return Decision(EventState.FAILED)
    delay = timedelta(seconds=schedule[next_step])
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return Decision(EventState.PENDING, now + delay, next_step)


def record_events(session: Session, prediction_ids: Sequence[str], event: str, *, terminal: bool) -> int:
    """Add ``event`` for each of these predictions whose webhook wants it; in the caller's transaction.

    A progress event is dropped when the prediction had one within PROGRESS_THROTTLE. Returns how
    many events were added; the dispatchers are woken at commit.
    """
    if not prediction_ids:
        return 0
    wanted = and_(
        Prediction.id.in_(prediction_ids),
        Prediction.webhook.is_not(None),
        Prediction.webhook_events_filter.contains([event]),
    )
    if not terminal:
        recent = select(WebhookEvent.id).where(
            WebhookEvent.prediction_id == Prediction.id,
            WebhookEvent.terminal.is_(False),
            WebhookEvent.created_at > func.now() - PROGRESS_THROTTLE,
        )
        wanted = and_(wanted, ~recent.exists())
    rows = select(
        literal("msg_") + func.replace(func.gen_random_uuid().cast(WebhookEvent.id.type), "-", ""),
        Prediction.id,
        Prediction.api_key_id,
        literal(event),
        Prediction.webhook,
        Prediction.webhook_format,
        literal(terminal),
        func.clock_timestamp(),  # not now(): ordering and the throttle need the moment, not the transaction's start
    ).where(wanted)
    columns = ["id", "prediction_id", "api_key_id", "event", "url", "format", "terminal", "created_at"]
    # The wake-up rides on the insert, once per event added (Postgres folds identical notifications of a
    # transaction): one round trip, not two. Core on the session's connection (each transition of a job with a
    # webhook runs this): nothing to load, and the ORM's execution path costs more than this.
    adding = insert(WebhookEvent).from_select(columns, rows).returning(WAKE_DISPATCHERS)
    return len(session.connection().execute(adding).all())


def claim_due_events(session: Session, *, limit: int, lease: timedelta) -> list[DueEvent]:
    """Take up to ``limit`` due events for sending: each is leased (its due time moved past the send's
    longest duration), so a dispatcher that dies mid-send leaves it to be sent again, not lost."""
    due = (
        select(WebhookEvent.id)
        .where(WebhookEvent.state == EventState.PENDING, WebhookEvent.next_attempt_at <= func.now())
        .order_by(WebhookEvent.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    claimed = session.execute(
        update(WebhookEvent)
        .where(WebhookEvent.id.in_(due.scalar_subquery()))
        .values(next_attempt_at=func.now() + lease)
        .returning(
            WebhookEvent.id,
            WebhookEvent.prediction_id,
            WebhookEvent.api_key_id,
            WebhookEvent.event,
            WebhookEvent.url,
            WebhookEvent.format,
            WebhookEvent.terminal,
            WebhookEvent.schedule_step,
            WebhookEvent.created_at,
            WebhookEvent.next_attempt_at,
        )
    ).all()
    return [
        DueEvent(
            id=row.id,
            prediction_id=row.prediction_id,
            api_key_id=row.api_key_id,
            event=row.event,
            url=row.url,
            format=WebhookFormat(row.format),
            terminal=row.terminal,
            schedule_step=row.schedule_step,
            created_at=row.created_at,
            lease_until=row.next_attempt_at,
        )
        for row in claimed
    ]


def next_due_at(session: Session) -> datetime | None:
    """When the earliest pending event falls due."""
    return session.scalar(
        select(func.min(WebhookEvent.next_attempt_at)).where(WebhookEvent.state == EventState.PENDING)
    )


def is_superseded(session: Session, event: DueEvent, prediction: Prediction) -> bool:
    """A progress event is stale once its prediction ended or a later progress event exists."""
    if event.terminal:
        return False
    if prediction.completed_at is not None:
        return True
    later = select(WebhookEvent.id).where(
        WebhookEvent.prediction_id == event.prediction_id,
        WebhookEvent.terminal.is_(False),
        WebhookEvent.created_at > event.created_at,
    )
    return bool(session.scalar(later.exists().select()))


def finish_attempt(session: Session, event: DueEvent, decision: Decision, attempt: WebhookAttempt | None) -> bool:
    """Record an attempt and the event's next state. The state changes only while this sender's lease
    still holds, so a sender whose lease lapsed cannot overwrite a newer one's result; the attempt
    itself is always logged. Returns whether the state changed."""
    if attempt is not None:
        attempt.event_id = event.id
        session.add(attempt)
    values: dict[str, object] = {
        "state": decision.state,
        "next_attempt_at": decision.next_attempt_at,
        "schedule_step": decision.schedule_step if decision.state is EventState.PENDING else event.schedule_step,
    }
    if decision.state is EventState.DELIVERED:
        values["delivered_at"] = func.now()
    changed = session.scalar(
        update(WebhookEvent)
        .where(
            WebhookEvent.id == event.id,
            WebhookEvent.state == EventState.PENDING,
            WebhookEvent.next_attempt_at == event.lease_until,
        )
        .values(values)
        .returning(WebhookEvent.id)
    )
    if changed is not None and decision.state is EventState.DISABLED:
        disable_url(session, api_key_id=event.api_key_id, url=event.url)
    if changed is not None and decision.state is EventState.PENDING:
        session.execute(select(WAKE_DISPATCHERS))  # dispatchers re-plan their sleep
    return changed is not None


def disable_url(session: Session, *, api_key_id: int, url: str) -> None:
    """Stop sending to ``url`` for this key: it answered 410 Gone. Its pending events end ``disabled``."""
    session.execute(pg_insert(DisabledWebhookUrl).values(api_key_id=api_key_id, url=url).on_conflict_do_nothing())
    session.execute(
        update(WebhookEvent)
        .where(
            WebhookEvent.api_key_id == api_key_id,
            WebhookEvent.url == url,
            WebhookEvent.state == EventState.PENDING,
        )
        .values(state=EventState.DISABLED, next_attempt_at=None)
    )


def disabled_since(session: Session, *, api_key_id: int, url: str) -> datetime | None:
    """When ``url`` was disabled for this key, or None while it is enabled."""
    return session.scalar(
        select(DisabledWebhookUrl.disabled_at).where(
            DisabledWebhookUrl.api_key_id == api_key_id, DisabledWebhookUrl.url == url
        )
    )


def enable_url(session: Session, *, api_key_id: int, url: str) -> bool:
    """Allow ``url`` again after a 410; False when it was not disabled."""
    row = session.get(DisabledWebhookUrl, (api_key_id, url))
    if row is None:
        return False
    session.delete(row)
    return True


def prediction_events(session: Session, prediction_id: str) -> list[tuple[WebhookEvent, list[WebhookAttempt]]]:
    """A prediction's events, oldest first, each with its attempts in order."""
    events = list(
        session.scalars(
            select(WebhookEvent)
            .where(WebhookEvent.prediction_id == prediction_id)
            .order_by(WebhookEvent.created_at, WebhookEvent.id)
        )
    )
    attempts: dict[str, list[WebhookAttempt]] = {event.id: [] for event in events}
    if events:
        for attempt in session.scalars(
            select(WebhookAttempt).where(WebhookAttempt.event_id.in_(attempts)).order_by(WebhookAttempt.id)
        ):
            attempts[attempt.event_id].append(attempt)
    return [(event, attempts[event.id]) for event in events]


def redeliver_last(session: Session, prediction_id: str) -> WebhookEvent | None:
    """Send the prediction's latest event again, now, with the same ``webhook-id`` and a fresh
    retry schedule. None when the prediction has no events."""
    latest = session.scalar(
        select(WebhookEvent)
        .where(WebhookEvent.prediction_id == prediction_id)
        .order_by(WebhookEvent.created_at.desc(), WebhookEvent.id.desc())
        .limit(1)
        .with_for_update()
    )
    if latest is None:
        return None
    latest.state, latest.next_attempt_at, latest.schedule_step = EventState.PENDING, func.now(), 0
    session.flush()
    session.execute(select(WAKE_DISPATCHERS))
    session.refresh(latest)
    return latest
