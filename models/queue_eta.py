"""Where a queued prediction stands: its place in the model's queue and an estimate of its wait.

Read from Postgres (the truth), not from Redis: a message in Redis may be a duplicate or stale.
"""

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, DateTime, SQLColumnExpression, String, bindparam, func, select, tuple_
from sqlalchemy.orm import Session

from models.psycopg_direct import BoundStatement, PsycopgStatement, run_one
from models.status import Status
from models.tables import QUEUED_AT, Prediction

# Recent runs that measure throughput; few enough to follow a change of hardware quickly.
THROUGHPUT_SAMPLE = 20
KNOWN_STANDINGS = "known_standings"  # Session.info entry: {prediction id: standing} read ahead (remember_standing)


@dataclass(frozen=True)
class QueueStanding:
    position: int  # predictions of the same model ahead of this one (0: next to start)
    eta_seconds: float | None  # estimated wait until it starts; None before any run was measured


def standing_columns(
    model: SQLColumnExpression[str], created_at: SQLColumnExpression[datetime], prediction_id: SQLColumnExpression[str]
) -> tuple[ColumnElement[int], ColumnElement[float | None], ColumnElement[int]]:
    """The jobs ahead of a queued prediction, the mean GPU-seconds of the model's recent runs, and the workers
    busy with the model now, as three scalar subqueries of the prediction's model, creation time and id: bound
    values (``STANDING``) or the columns of a prediction read in the same statement (``models.poll_read``)."""
    ahead = (
        select(func.count())
        .select_from(Prediction)
        .where(
            Prediction.model == model,
            # Through ix_predictions_queue_order: QUEUED_AT is NULL unless queued. The plain comparison is the one
            # the planner can estimate (a row comparison gets a fixed guess), so it picks that index.
            QUEUED_AT <= created_at,
            tuple_(QUEUED_AT, Prediction.id) < tuple_(created_at, prediction_id),
        )
    )
    # This and ``busy`` read ix_predictions_model_succeeded and ix_predictions_model_processing: a few rows each.
    recent = (
        select(Prediction.gpu_seconds)
        .where(Prediction.model == model, Prediction.status == Status.SUCCEEDED)
        .order_by(Prediction.completed_at.desc())
        .limit(THROUGHPUT_SAMPLE)
        .correlate_except(Prediction)  # in FROM, where SQLAlchemy correlates nothing on its own
        .subquery()
    )
    busy = select(func.count(func.distinct(Prediction.worker))).where(
        Prediction.status == Status.PROCESSING,
        Prediction.model == model,
        Prediction.lease_expires_at > bindparam("now", type_=DateTime(timezone=True)),
    )
    return (
        ahead.scalar_subquery(),
        select(func.avg(recent.c.gpu_seconds)).scalar_subquery(),
        busy.scalar_subquery(),
    )


# Values go in as parameters, so it compiles once: clients poll. Sent on psycopg (``models.psycopg_direct``): alone,
# or ahead of a create's other statements in their round trip.
STANDING = PsycopgStatement.compile(
    select(
        *standing_columns(
            bindparam("model", type_=String()),
            bindparam("created_at", type_=DateTime(timezone=True)),
            bindparam("id", type_=String()),
        )
    )
)


def standing_statement(model: str, created_at: datetime, prediction_id: str) -> BoundStatement:
    """``STANDING`` of a prediction of ``model`` created at ``created_at``; its row goes to ``standing_of``."""
    return STANDING.bind(model=model, created_at=created_at, id=prediction_id, now=datetime.now(UTC))


def queue_standing(session: Session, prediction: Prediction) -> QueueStanding:
    """The standing of a ``starting`` prediction: the one ``remember_standing`` kept, else read in one round trip."""
    known: QueueStanding | None = session.info.get(KNOWN_STANDINGS, {}).get(prediction.id)
    if known is not None:
        return known
    return read_standing(session, prediction.model, prediction.created_at, prediction.id)


def read_standing(session: Session, model: str, created_at: datetime, prediction_id: str) -> QueueStanding:
    """The standing of a queued prediction of ``model`` created at ``created_at``, whether or not it is written yet."""
    row = run_one(session, standing_statement(model, created_at, prediction_id))
    assert row is not None  # three scalar subqueries always make a row
    return standing_of(*row)


def standing_of(position: int | None, seconds_per_job: float | None, workers: int | None) -> QueueStanding:
    """The standing from the values of ``standing_columns``."""
    position, workers = int(position or 0), int(workers or 0)
    if seconds_per_job is None:
        return QueueStanding(position, None)
    # Jobs ahead, plus the ones running now, shared by the workers seen busy (at least one).
    eta = (position + workers) * float(seconds_per_job) / max(workers, 1)
    return QueueStanding(position, round(eta, 3))


def remember_standing(session: Session, prediction_id: str, standing: QueueStanding) -> None:
    """Keep a standing read in another statement (``api.submit``) for ``queue_standing`` in this session."""
    session.info.setdefault(KNOWN_STANDINGS, {})[prediction_id] = standing


def standing_if_queued(session: Session, prediction: Prediction) -> QueueStanding | None:
    """The standing while the prediction is queued (``starting``); None once it has started or ended."""
    return queue_standing(session, prediction) if prediction.status == Status.STARTING else None
