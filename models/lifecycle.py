"""The prediction state machine. Every status change is a compare-and-set guarded by status and
``attempt`` (the fencing token), so a duplicate or stale execution changes 0 rows.

    starting ──claim──▶ processing ──finish──▶ succeeded | failed | canceled
        │    ◀──reap (lease expired, attempts left)──┘ ──reap (none left)──▶ failed
        └──────cancel───────────────────────▶ canceled

No other module writes ``Prediction.status``. Each transition writes the webhook events it causes
in its own transaction (``models.webhooks``).
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, NamedTuple

from psycopg.types.json import Jsonb
from sqlalchemy import DateTime, String, Update, bindparam, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from models.catalog import ModelSpec, find_model
from models.cost import RunCost
from models.ids import new_prediction_id
from models.psycopg_direct import BoundStatement, PsycopgStatement, Row, run_pipelined, transient
from models.queue import TASK_RENDER
from models.status import Status
from models.tables import QUEUED_AT, OutboxMessage, Prediction
from models.webhooks import WebhookTarget, record_events

DEADLINE_ERROR = "Canceled: the Cancel-After deadline passed."
LEASE_EXPIRED_ERROR = (
    "The worker running this prediction stopped responding (its lease expired) on each of {attempts} "
    "attempt(s), the most allowed; it was not retried again. If this repeats, the input may crash workers."
)

# Returned by the transitions that write events: without a webhook, the event statements are skipped.
HAS_WEBHOOK = Prediction.webhook.is_not(None)
# Gateways waiting on predictions listen here; the payload is the id of a prediction that ended.
ENDED_CHANNEL = "farm_ended"
# Returned by every statement that ends predictions: the wake-up, one per row ended, is sent at commit and
# costs no round trip of its own.
WAKE_WAITERS = func.pg_notify(ENDED_CHANNEL, Prediction.id)
# Relay wake-up channel: NOTIFY is delivered at commit, so the relay never sees uncommitted jobs.
OUTBOX_CHANNEL = "farm_outbox"
# The relay's wake-up rides on the insert: one round trip, not two. Delivered at commit, and once: Postgres
# folds identical notifications of one transaction. Rows go as parameters, so the statement compiles once.
INSERT_OUTBOX_AND_NOTIFY = insert(OutboxMessage).returning(func.pg_notify(OUTBOX_CHANNEL, ""))
# A create's two statements, sent on psycopg (``models.psycopg_direct``): creates are the gateway's hottest write.
# Every column is given, so the returned object is the whole row without a second read.
CREATED_COLUMNS = (
    "id", "api_key_id", "model", "version", "input", "seed", "status", "attempt", "max_attempts", "deadline",
    "image_key", "logs", "webhook", "webhook_events_filter", "webhook_format",
)  # fmt: skip
JSONB_COLUMNS = frozenset(column.name for column in Prediction.__table__.c if isinstance(column.type, JSONB))
INSERT_CREATED = PsycopgStatement.compile(
    insert(Prediction).values({name: bindparam(name) for name in CREATED_COLUMNS}).returning(Prediction.created_at)
)
ENQUEUE_CREATED = PsycopgStatement.compile(
    insert(OutboxMessage)
    .values(prediction_id=bindparam("prediction_id"), task_name=bindparam("task_name"), queue=bindparam("queue"))
    .returning(func.pg_notify(OUTBOX_CHANNEL, ""))
)
# How many of the oldest queued predictions a batching worker looks through for ones that fit its batch.
COMPANION_SCAN_ROWS = 64

# A worker's statements are built once (each job runs them), with what varies as parameters: building one per
# call cost more Python than its round trip. They run on the session's connection, as Core: the ORM's bulk-update
# path (loading entities from RETURNING, synchronising an identity map that holds nothing) cost more again.
TIMESTAMPTZ = DateTime(timezone=True)
CLAIM = (
    update(Prediction)
    .where(
        Prediction.id.in_(bindparam("prediction_ids", expanding=True)),
        Prediction.status == Status.STARTING,
        Prediction.attempt < Prediction.max_attempts,
        or_(Prediction.deadline.is_(None), Prediction.deadline > bindparam("now", type_=TIMESTAMPTZ)),
    )
    .values(
        status=Status.PROCESSING,
        attempt=Prediction.attempt + 1,
        worker=bindparam("worker_name"),
        started_at=func.coalesce(Prediction.started_at, bindparam("now", type_=TIMESTAMPTZ)),
        lease_expires_at=bindparam("lease_expires_at", type_=TIMESTAMPTZ),
    )
    .returning(
        Prediction.id,
        Prediction.attempt,
        Prediction.model,
        Prediction.input,
        Prediction.seed,
        Prediction.image_key,
        HAS_WEBHOOK,
    )
)
# The fence of every write after a claim: the claim's attempt still holds the prediction (Claim.fence()).
HELD_ATTEMPT = (
    Prediction.id == bindparam("claim_id"),
    Prediction.status == Status.PROCESSING,
    Prediction.attempt == bindparam("claim_attempt"),
)
# Each transition adds the columns it sets.
FINISH = update(Prediction).where(*HELD_ATTEMPT).returning(HAS_WEBHOOK, WAKE_WAITERS)
# Success, the ending every job takes, is built once as well.
SUCCEED = FINISH.values(
    status=Status.SUCCEEDED,
    completed_at=bindparam("completed_at", type_=TIMESTAMPTZ),
    lease_expires_at=None,
    output_keys=bindparam("output_keys"),
    predict_time=bindparam("predict_time"),
    logs=bindparam("logs"),
    # No safety checker, no flags: SQL NULL, not a JSON null.
    has_nsfw_concepts=bindparam("has_nsfw_concepts", type_=JSONB(none_as_null=True)),
    progress_step=bindparam("progress_step"),
    progress_total=bindparam("progress_total"),
    **{field.name: bindparam(field.name) for field in fields(RunCost)},
)
HEARTBEAT = (
    update(Prediction)
    .where(*HELD_ATTEMPT)
    .values(
        lease_expires_at=bindparam("lease_expires_at", type_=TIMESTAMPTZ),
        logs=bindparam("logs_text"),
        progress_step=bindparam("step"),
        progress_total=bindparam("total"),
    )
    .returning(Prediction.cancel_requested_at, Prediction.deadline, HAS_WEBHOOK)
)


@dataclass(frozen=True)
class NewPrediction:
    """A prediction to create. ``id`` is given by callers that stored files under it first (the init image at
    ``image_key``); by default a fresh one is drawn."""

    api_key_id: int
    spec: ModelSpec
    inputs: dict[str, Any]
    seed: int
    max_attempts: int
    deadline: datetime | None = None
    id: str = field(default_factory=new_prediction_id)
    image_key: str | None = None
    webhook: WebhookTarget | None = None

    @cached_property
    def values(self) -> dict[str, Any]:
        """Its row's columns (``CREATED_COLUMNS``); the others start NULL or as the server sets them."""
        webhook = self.webhook
        return {
            "id": self.id,
            "api_key_id": self.api_key_id,
            "model": self.spec.ref,
            "version": self.spec.version,
            "input": self.inputs,
            "seed": self.seed,
            "status": Status.STARTING,
            "attempt": 0,
            "max_attempts": self.max_attempts,
            "deadline": self.deadline,
            "image_key": self.image_key,
            "logs": "",
            "webhook": None if webhook is None else webhook.url,
            "webhook_events_filter": None if webhook is None else list(webhook.events),
            "webhook_format": None if webhook is None else webhook.format,
        }

    def statements(self) -> dict[str, BoundStatement]:
        """Its row, then its outbox message (after the row: the outbox's foreign key), for ``run_pipelined``."""
        row = {name: _as_sent(name, value) for name, value in self.values.items()}
        return {
            "created": INSERT_CREATED.bind(**row),
            "enqueued": ENQUEUE_CREATED.bind(prediction_id=self.id, task_name=TASK_RENDER, queue=self.spec.queue),
        }

    def written(self, rows: Mapping[str, Row]) -> Prediction:
        """The row as ``statements`` wrote it, outside any session, from their results."""
        return transient(Prediction, (*self.values, "created_at"), (*self.values.values(), rows["created"][0]))


def _as_sent(column: str, value: Any) -> Any:
    """A value as psycopg takes it for ``column``, where SQLAlchemy's column types would have converted it."""
    if isinstance(value, Status):
        return value.value
    if column in JSONB_COLUMNS and value is not None:
        return Jsonb(value)
    return value


def create_prediction(session: Session, new: NewPrediction) -> Prediction:
    """Record ``new`` and its outbox message in the caller's transaction, in one round trip; return the row as
    written, outside the session."""
    return new.written(run_pipelined(session, new.statements()))


def enqueue(session: Session, jobs: list[tuple[str, str]]) -> None:
    """Outbox rows that publish these (prediction id, queue) pairs once the caller's transaction commits."""
    if not jobs:
        return
    rows = [{"prediction_id": id_, "task_name": TASK_RENDER, "queue": queue} for id_, queue in jobs]
    session.connection().execute(INSERT_OUTBOX_AND_NOTIFY, rows)


class ClaimedRow(NamedTuple):
    """What a worker needs of a prediction it claimed: CLAIM's RETURNING, so the worker needs no second read."""

    id: str
    attempt: int
    model: str
    input: dict[str, Any]
    seed: int
    image_key: str | None
    has_webhook: bool


@dataclass(frozen=True)
class Claim:
    """A worker's hold on one attempt of a prediction."""

    prediction_id: str
    attempt: int
    # The row as the claim left it; not part of the token.
    row: ClaimedRow | None = field(default=None, compare=False, repr=False)

    def fence(self) -> dict[str, Any]:
        """The parameters of HELD_ATTEMPT for this claim."""
        return {"claim_id": self.prediction_id, "claim_attempt": self.attempt}


def writes_one_statement(claim: Claim) -> bool:
    """Whether each later transition of the claim (heartbeat, finish) writes with one statement, and so needs no
    transaction around it: when the prediction has no webhook, whose events are the other statements. False when
    the claim does not carry its row."""
    return claim.row is not None and not claim.row.has_webhook


def claim(session: Session, *, prediction_id: str, worker: str, lease_seconds: float) -> Claim | None:
    """starting → processing, taking the next attempt. None when another execution owns it, it is
    finished or canceled, or its attempts are used up."""
    claims = _claim_ids(session, [prediction_id], worker=worker, lease_seconds=lease_seconds)
    return claims[0] if claims else None


def claim_companions(
    session: Session,
    *,
    lead: Claim,
    worker: str,
    lease_seconds: float,
    limit: int,
    fits: Callable[[dict[str, Any], int], bool],
) -> list[Claim]:
    """Claim up to ``limit`` more queued predictions of the lead's model, oldest first, that ``fits`` accepts
    (given their input and seed), to be denoised in one pipeline call with the lead. Image-to-image predictions
    are never taken, and rows another worker is claiming are skipped, not waited for. Their own broker messages
    later fail the claim harmlessly."""
    assert lead.row is not None, "the lead's claim carries its row"
    candidates = session.execute(
        select(Prediction.id, Prediction.input, Prediction.seed)
        .where(Prediction.model == lead.row.model, QUEUED_AT.is_not(None), Prediction.image_key.is_(None))
        .order_by(QUEUED_AT, Prediction.id)  # ix_predictions_queue_order
        .limit(COMPANION_SCAN_ROWS)
        .with_for_update(skip_locked=True)
    ).all()
    chosen = [prediction_id for prediction_id, inputs, seed in candidates if fits(inputs, seed)][:limit]
    if not chosen:
        return []
    return _claim_ids(session, chosen, worker=worker, lease_seconds=lease_seconds)


def _claim_ids(session: Session, prediction_ids: list[str], *, worker: str, lease_seconds: float) -> list[Claim]:
    """The claim's compare-and-set on ``prediction_ids``, with the start events it causes."""
    now = datetime.now(UTC)
    values = {
        "prediction_ids": prediction_ids,
        "now": now,
        "worker_name": worker,
        "lease_expires_at": now + timedelta(seconds=lease_seconds),
    }
    claimed = [ClaimedRow(*row) for row in session.connection().execute(CLAIM, values)]
    # A retried attempt is not a new start.
    started = [row.id for row in claimed if row.attempt == 1 and row.has_webhook]
    if started:
        record_events(session, started, "start", terminal=False)
    return [Claim(row.id, row.attempt, row) for row in claimed]


def _ended(session: Session, prediction_ids: list[str], *, with_output: bool = False, has_webhook: bool = True) -> None:
    """Side effects of reaching a terminal state, in the same transaction: the ``completed`` webhook
    event (after ``output`` when there are outputs). ``has_webhook`` False (known from the row just
    written) spares the event statements; otherwise ``record_events`` picks the predictions with one.
    The gateways' wake-up is sent by the ending statement itself (``WAKE_WAITERS``)."""
    if has_webhook:
        if with_output:
            record_events(session, prediction_ids, "output", terminal=True)
        record_events(session, prediction_ids, "completed", terminal=True)


def _finish(session: Session, claim: Claim, status: Status, finishing: Update, values: dict[str, Any]) -> bool:
    """processing → terminal ``status`` for the claim's attempt, by ``finishing`` (FINISH with the columns it sets)
    with ``values`` as its parameters. False when the claim was lost.

    Also True when the row already holds this attempt's ``status``: a retry after an ambiguous commit
    (committed, but the answer lost with the connection) recognises its own finish and writes nothing.
    """
    finished = session.connection().execute(finishing, claim.fence() | values).first()
    if finished is not None:
        _ended(session, [claim.prediction_id], with_output=status is Status.SUCCEEDED, has_webhook=finished[0])
        return True
    now = session.execute(
        select(Prediction.status, Prediction.attempt).where(Prediction.id == claim.prediction_id)
    ).first()
    return now is not None and tuple(now) == (status, claim.attempt)


def _ending(status: Status, **values: Any) -> Update:
    """FINISH for ``status``, setting these columns too (for the rarer endings; success has SUCCEED)."""
    return FINISH.values(status=status, completed_at=datetime.now(UTC), lease_expires_at=None, **values)


def succeed(
    session: Session,
    claim: Claim,
    *,
    output_keys: list[str],
    predict_time: float,
    cost: RunCost,
    logs: str,
    has_nsfw_concepts: list[bool] | None = None,
    progress: tuple[int, int] | None = None,
) -> bool:
    """Record the winning attempt's outputs and metrics; ``has_nsfw_concepts`` holds one flag per output when a
    safety checker ran, else None (stored as SQL NULL, not a JSON null). ``progress`` is the last (step, total),
    which heartbeats, throttled, may not have recorded."""
    step, total = progress or (None, None)
    values = {
        "completed_at": datetime.now(UTC),
        "output_keys": output_keys,
        "predict_time": predict_time,
        "logs": logs,
        "has_nsfw_concepts": has_nsfw_concepts,
        "progress_step": step,
        "progress_total": total,
        **cost.columns(),
    }
    return _finish(session, claim, Status.SUCCEEDED, SUCCEED, values)


def fail(
    session: Session,
    claim: Claim,
    *,
    error: str,
    predict_time: float | None = None,
    logs: str = "",
    cost: RunCost | None = None,
) -> bool:
    """End the attempt ``failed`` with a readable error (and the GPU time it held, when known)."""
    usage = cost.columns() if cost is not None else {}
    ending = _ending(Status.FAILED, error=error, predict_time=predict_time, logs=logs, **usage)
    return _finish(session, claim, Status.FAILED, ending, {})


def cancel_running(
    session: Session, claim: Claim, *, predict_time: float | None, logs: str, cost: RunCost | None = None
) -> bool:
    """End a running attempt ``canceled`` after the worker saw the cancel request."""
    usage = cost.columns() if cost is not None else {}
    ending = _ending(Status.CANCELED, predict_time=predict_time, logs=logs, **usage)
    return _finish(session, claim, Status.CANCELED, ending, {})


def fail_killed_run(session: Session, *, prediction_id: str, worker: str, error: str) -> bool:
    """End ``failed`` a run whose worker process was killed (its hard time limit) while it held the claim.
    The killed process has no claim object to fence with; its worker name does: a row the reaper requeued
    and another worker claimed names that worker, and is left alone."""
    failed = session.scalar(
        update(Prediction)
        .where(
            Prediction.id == prediction_id,
            Prediction.status == Status.PROCESSING,
            Prediction.worker == worker,
        )
        .values(status=Status.FAILED, completed_at=datetime.now(UTC), lease_expires_at=None, error=error)
        .returning(Prediction.id, WAKE_WAITERS)
    )
    if failed is not None:
        _ended(session, [prediction_id])
    return failed is not None


def request_cancel(session: Session, *, prediction_id: str) -> None:
    """Cancel: a queued prediction ends ``canceled`` at once (a later delivery cannot claim it);
    a running one is flagged, and its worker stops at the next step boundary."""
    now = datetime.now(UTC)
    canceled = session.execute(
        update(Prediction)
        .where(Prediction.id == prediction_id, Prediction.status == Status.STARTING)
        .values(status=Status.CANCELED, completed_at=now)
        .returning(Prediction.id, WAKE_WAITERS)
    ).scalars()
    _ended(session, list(canceled))
    session.execute(
        update(Prediction)
        .where(
            Prediction.id == prediction_id,
            Prediction.status == Status.PROCESSING,
            Prediction.cancel_requested_at.is_(None),
        )
        .values(cancel_requested_at=now)
    )


def heartbeat(session: Session, claim: Claim, *, lease_seconds: float, logs: str, step: int, total: int) -> bool | None:
    """Extend the claim's lease and record progress. Returns whether the run must stop (canceled,
    or past its Cancel-After deadline), or None when the claim is lost (another attempt owns the
    prediction, or it ended)."""
    now = datetime.now(UTC)
    values = {
        "lease_expires_at": now + timedelta(seconds=lease_seconds),
        "logs_text": logs,
        "step": step,
        "total": total,
    }
    row = session.connection().execute(HEARTBEAT, claim.fence() | values).first()
    if row is None:
        return None
    cancel_requested_at, deadline, has_webhook = row
    if has_webhook:
        record_events(session, [claim.prediction_id], "logs", terminal=False)
    return cancel_requested_at is not None or (deadline is not None and deadline <= now)


def expire_deadlines(session: Session) -> int:
    """Cancel-After: cancel queued predictions past their deadline and flag running ones (their
    worker stops at the next step). Returns how many queued predictions were canceled."""
    now = datetime.now(UTC)
    canceled = (
        session.execute(
            update(Prediction)
            .where(Prediction.status == Status.STARTING, Prediction.deadline <= now)
            .values(status=Status.CANCELED, completed_at=now, error=DEADLINE_ERROR)
            .returning(Prediction.id, WAKE_WAITERS)
        )
        .scalars()
        .all()
    )
    _ended(session, list(canceled))
    session.execute(
        update(Prediction)
        .where(
            Prediction.status == Status.PROCESSING,
            Prediction.deadline <= now,
            Prediction.cancel_requested_at.is_(None),
        )
        .values(cancel_requested_at=now)
    )
    return len(canceled)


def reap_expired_leases(session: Session) -> tuple[list[str], list[str]]:
    """Predictions whose worker stopped renewing its lease (killed, hung, cut off): back to ``starting``
    with a new outbox message while attempts remain, else ``failed`` (a job that kills its worker every
    time ends). A running one whose cancel was requested ends ``canceled``. Returns (requeued, ended).

    Compare-and-set on the expired lease: a heartbeat that renewed it first wins, and the old worker's
    later writes fail on the fencing token.
    """
    now = datetime.now(UTC)
    expired = (Prediction.status == Status.PROCESSING, Prediction.lease_expires_at < now)
    canceled = session.execute(
        update(Prediction)
        .where(*expired, Prediction.cancel_requested_at.is_not(None))
        .values(status=Status.CANCELED, completed_at=now, lease_expires_at=None)
        .returning(Prediction.id, WAKE_WAITERS)
    ).scalars()
    given_up = session.execute(
        update(Prediction)
        .where(*expired, Prediction.attempt >= Prediction.max_attempts)
        .values(
            status=Status.FAILED,
            completed_at=now,
            lease_expires_at=None,
            error=func.replace(LEASE_EXPIRED_ERROR, "{attempts}", func.cast(Prediction.attempt, String)),
        )
        .returning(Prediction.id, WAKE_WAITERS)
    ).scalars()
    ended = [*canceled, *given_up]
    _ended(session, ended)
    requeued = session.execute(
        update(Prediction)
        .where(*expired)
        .values(status=Status.STARTING, worker=None, lease_expires_at=None)
        .returning(Prediction.id, Prediction.model)
    ).all()
    enqueue(session, [(prediction_id, queue_of(model)) for prediction_id, model in requeued])
    return [prediction_id for prediction_id, _ in requeued], ended


def republish(session: Session, prediction_ids: list[str]) -> list[str]:
    """New outbox messages for predictions still ``starting`` (their message was lost, e.g. with Redis's
    data); a duplicate is harmless, its claim fails. Returns the ids republished."""
    rows = session.execute(
        select(Prediction.id, Prediction.model).where(
            Prediction.id.in_(prediction_ids), Prediction.status == Status.STARTING
        )
    ).all()
    enqueue(session, [(prediction_id, queue_of(model)) for prediction_id, model in rows])
    return [prediction_id for prediction_id, _ in rows]


def queue_of(model: str) -> str:
    spec = find_model(model)
    assert spec is not None, f"no model {model} in the catalog"
    return spec.queue
