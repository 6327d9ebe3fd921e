"""The prediction state machine. Every status change is a compare-and-set guarded by status and
``attempt`` (the fencing token), so a duplicate or stale execution changes 0 rows.

    starting ──claim──▶ processing ──finish──▶ succeeded | failed | canceled
        └──────cancel───────────────────────▶ canceled

No other module writes ``Prediction.status``.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, null, or_, select, update
from sqlalchemy.orm import Session

from models.catalog import ModelSpec
from models.ids import new_prediction_id
from models.queue import TASK_RENDER
from models.status import Status
from models.tables import OutboxMessage, Prediction

DEADLINE_ERROR = "Canceled: the Cancel-After deadline passed."

# Gateways waiting on predictions listen here; the payload is the id of a prediction that ended.
ENDED_CHANNEL = "farm_ended"
# Relay wake-up channel: NOTIFY is delivered at commit, so the relay never sees uncommitted jobs.
OUTBOX_CHANNEL = "farm_outbox"


def create_prediction(
    session: Session,
    *,
    api_key_id: int,
    spec: ModelSpec,
    inputs: dict[str, Any],
    seed: int,
    max_attempts: int,
    deadline: datetime | None = None,
    prediction_id: str | None = None,
    image_key: str | None = None,
) -> Prediction:
    """Record a new prediction and its outbox message in the caller's transaction.

    ``prediction_id`` is for callers that stored files under the id first (the init image at
    ``image_key``); by default a fresh id is drawn.
    """
    prediction = Prediction(
        id=prediction_id or new_prediction_id(),
        api_key_id=api_key_id,
        model=spec.ref,
        version=spec.version,
        input=inputs,
        seed=seed,
        status=Status.STARTING,
        attempt=0,
        max_attempts=max_attempts,
        deadline=deadline,
        image_key=image_key,
        logs="",
    )
    session.add(prediction)
    session.flush()  # before the outbox row (its foreign key); RETURNING fills created_at (eager_defaults)
    session.add(OutboxMessage(prediction_id=prediction.id, task_name=TASK_RENDER, queue=spec.queue))
    session.flush()
    session.execute(select(func.pg_notify(OUTBOX_CHANNEL, prediction.id)))
    return prediction


@dataclass(frozen=True)
class Claim:
    """A worker's hold on one attempt of a prediction."""

    prediction_id: str
    attempt: int


def claim(session: Session, *, prediction_id: str, worker: str, lease_seconds: float) -> Claim | None:
    """starting → processing, taking the next attempt. None when another execution owns it, it is
    finished or canceled, or its attempts are used up."""
    now = datetime.now(UTC)
    attempt = session.scalar(
        update(Prediction)
        .where(
            Prediction.id == prediction_id,
            Prediction.status == Status.STARTING,
            Prediction.attempt < Prediction.max_attempts,
            or_(Prediction.deadline.is_(None), Prediction.deadline > now),
        )
        .values(
            status=Status.PROCESSING,
            attempt=Prediction.attempt + 1,
            worker=worker,
            started_at=func.coalesce(Prediction.started_at, now),
            lease_expires_at=now + timedelta(seconds=lease_seconds),
        )
        .returning(Prediction.attempt)
    )
    return None if attempt is None else Claim(prediction_id, attempt)


def _notify_ended(session: Session, prediction_ids: list[str]) -> None:
    """Tell gateways waiting on these predictions (``Prefer: wait``) that they ended; delivered at commit."""
    for prediction_id in prediction_ids:
        session.execute(select(func.pg_notify(ENDED_CHANNEL, prediction_id)))


def _finish(session: Session, claim: Claim, status: Status, **values: Any) -> bool:
    """processing → terminal for the claim's attempt. False when the claim was lost."""
    finished = session.scalar(
        update(Prediction)
        .where(
            Prediction.id == claim.prediction_id,
            Prediction.status == Status.PROCESSING,
            Prediction.attempt == claim.attempt,
        )
        .values(status=status, completed_at=datetime.now(UTC), lease_expires_at=None, **values)
        .returning(Prediction.id)
    )
    if finished is not None:
        _notify_ended(session, [claim.prediction_id])
    return finished is not None


def succeed(
    session: Session,
    claim: Claim,
    *,
    output_keys: list[str],
    predict_time: float,
    gpu_seconds: float,
    gpu_class: str,
    cost_usd: float,
    price_usd: float,
    logs: str,
    has_nsfw_concepts: list[bool] | None = None,
    progress: tuple[int, int] | None = None,
) -> bool:
    """Record the winning attempt's outputs and metrics; ``has_nsfw_concepts`` holds one flag per output when a
    safety checker ran, else None (stored as SQL NULL, not a JSON null). ``progress`` is the last (step, total),
    which heartbeats, throttled, may not have recorded."""
    step, total = progress or (None, None)
    return _finish(
        session,
        claim,
        Status.SUCCEEDED,
        output_keys=output_keys,
        predict_time=predict_time,
        gpu_seconds=gpu_seconds,
        gpu_class=gpu_class,
        cost_usd=cost_usd,
        price_usd=price_usd,
        logs=logs,
        has_nsfw_concepts=null() if has_nsfw_concepts is None else has_nsfw_concepts,
        progress_step=step,
        progress_total=total,
    )


def fail(session: Session, claim: Claim, *, error: str, predict_time: float | None = None, logs: str = "") -> bool:
    """End the attempt ``failed`` with a readable error."""
    return _finish(session, claim, Status.FAILED, error=error, predict_time=predict_time, logs=logs)


def cancel_running(session: Session, claim: Claim, *, predict_time: float | None, logs: str) -> bool:
    """End a running attempt ``canceled`` after the worker saw the cancel request."""
    return _finish(session, claim, Status.CANCELED, predict_time=predict_time, logs=logs)


def request_cancel(session: Session, *, prediction_id: str) -> None:
    """Cancel: a queued prediction ends ``canceled`` at once (a later delivery cannot claim it);
    a running one is flagged, and its worker stops at the next step boundary."""
    now = datetime.now(UTC)
    canceled = session.execute(
        update(Prediction)
        .where(Prediction.id == prediction_id, Prediction.status == Status.STARTING)
        .values(status=Status.CANCELED, completed_at=now)
        .returning(Prediction.id)
    ).scalars()
    _notify_ended(session, list(canceled))
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
    row = session.execute(
        update(Prediction)
        .where(
            Prediction.id == claim.prediction_id,
            Prediction.status == Status.PROCESSING,
            Prediction.attempt == claim.attempt,
        )
        .values(
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            logs=logs,
            progress_step=step,
            progress_total=total,
        )
        .returning(Prediction.cancel_requested_at, Prediction.deadline)
    ).first()
    if row is None:
        return None
    cancel_requested_at, deadline = row
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
            .returning(Prediction.id)
        )
        .scalars()
        .all()
    )
    _notify_ended(session, list(canceled))
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
