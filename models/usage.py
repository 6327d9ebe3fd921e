"""One key's usage over a time range, per UTC day or month: counts, images, GPU time, cost and price.

Aggregated in Postgres in one query (``GROUPING SETS``: a row per period plus the totals row), over the
key's predictions created in ``[since, until)``, read through ``ix_predictions_key_created``.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Float, Integer, func, select, tuple_
from sqlalchemy.orm import Session

from models.status import Status
from models.tables import Prediction

Period = Literal["day", "month"]
# A year of days, or 33 years of months: one answer stays small.
MAX_PERIODS = 400
RESOLUTION = timedelta(microseconds=1)  # of timestamps: ``until`` is exclusive


@dataclass(frozen=True)
class UsageFigures:
    predictions: int = 0
    succeeded: int = 0
    failed: int = 0
    canceled: int = 0
    images: int = 0
    gpu_seconds: float = 0.0
    cost_usd: float = 0.0
    price_usd: float = 0.0

    def public(self) -> dict[str, Any]:
        return {
            "predictions": self.predictions,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "canceled": self.canceled,
            "images": self.images,
            "gpu_seconds": round(self.gpu_seconds, 6),
            "cost_usd": round(self.cost_usd, 8),
            "price_usd": round(self.price_usd, 8),
        }


@dataclass(frozen=True)
class UsageReport:
    since: datetime
    until: datetime
    period: Period
    totals: UsageFigures
    periods: list[tuple[datetime, UsageFigures]]  # every period in the range, oldest first, empty ones too


def month_start(moment: datetime) -> datetime:
    """Midnight UTC on the first of ``moment``'s month."""
    return moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def period_start(moment: datetime, period: Period) -> datetime:
    """The UTC calendar day or month holding ``moment``."""
    if period == "month":
        return month_start(moment)
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def next_period(start: datetime, period: Period) -> datetime:
    if period == "month":
        return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    return datetime.fromordinal(start.toordinal() + 1).replace(tzinfo=UTC)


def period_count(since: datetime, until: datetime, period: Period) -> int:
    """How many periods overlap ``[since, until)``, counted without listing them."""
    first, last = period_start(since, period), period_start(until - RESOLUTION, period)
    if period == "month":
        return (last.year - first.year) * 12 + last.month - first.month + 1
    return (last - first).days + 1


def period_starts(since: datetime, until: datetime, period: Period) -> list[datetime]:
    """The start of every period that overlaps ``[since, until)``."""
    starts, start = [], period_start(since, period)
    while start < until:
        starts.append(start)
        try:
            start = next_period(start, period)
        except ValueError:  # past 9999-12-31: nothing later to list
            break
    return starts


def usage_report(session: Session, *, api_key_id: int, since: datetime, until: datetime, period: Period) -> UsageReport:
    """The key's usage in ``[since, until)``; a prediction counts in the period it was created in."""
    bucket = func.date_trunc(period, Prediction.created_at, "UTC").label("start")
    status = Prediction.status

    def count_where(wanted: Status) -> Any:
        return func.count().filter(status == wanted)

    def total(column: Any) -> Any:
        return func.coalesce(func.sum(column), 0)

    rows = session.execute(
        select(
            bucket,
            func.count(),
            count_where(Status.SUCCEEDED),
            count_where(Status.FAILED),
            count_where(Status.CANCELED),
            total(func.jsonb_array_length(Prediction.output_keys)).cast(Integer),
            total(Prediction.gpu_seconds).cast(Float),
            total(Prediction.cost_usd).cast(Float),
            total(Prediction.price_usd).cast(Float),
        )
        .where(Prediction.api_key_id == api_key_id, Prediction.created_at >= since, Prediction.created_at < until)
        # One row per period, plus the totals row (its bucket is NULL).
        .group_by(func.grouping_sets(tuple_(bucket), tuple_()))
    ).all()
    figures = {row[0]: UsageFigures(*row[1:]) for row in rows}
    totals = figures.pop(None, UsageFigures())
    periods = [(start, figures.get(start, UsageFigures())) for start in period_starts(since, until, period)]
    return UsageReport(since=since, until=until, period=period, totals=totals, periods=periods)
