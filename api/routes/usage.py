"""``GET /v1/usage``: the caller's own predictions, GPU time, cost and price per day or month."""

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session

from api.deps import CurrentKey, SessionDep
from api.errors import InputError
from api.presenter import iso
from models.usage import MAX_PERIODS, Period, month_start, period_count, usage_report

router = APIRouter(prefix="/v1/usage", tags=["usage"])

ISO_HINT = "use ISO 8601, e.g. 2026-11-01 or 2026-11-01T00:00:00Z (no offset means UTC)"


def moment(field: str, value: str | None, default: datetime) -> datetime:
    """A query parameter as an aware UTC datetime; a date means its midnight UTC."""
    if value is None:
        return default
    try:
        parsed = datetime.fromisoformat(value.strip())
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):  # overflow: an offset pushing year 1 or 9999 out of range
        raise InputError.field(field, f"not a date or time: {ISO_HINT}", value) from None


@router.get("")
def get_usage(
    key: CurrentKey,
    session: SessionDep,
    since: Annotated[str | None, Query(description="Start (inclusive); default: the 1st of this month, UTC.")] = None,
    until: Annotated[str | None, Query(description="End (exclusive); default: now.")] = None,
    period: Annotated[Period, Query(description="Rows per UTC `day` or `month`.")] = "day",
) -> dict[str, Any]:
    """Counts, images, GPU-seconds, cost and price of the caller's predictions created in ``[since, until)``."""
    return usage_of_key(session, key.id, since, until, period)


def usage_of_key(
    session: Session, api_key_id: int, since: str | None, until: str | None, period: Period
) -> dict[str, Any]:
    """The usage body of one key (also served to admin keys for any key, api/routes/admin.py)."""
    now = datetime.now(UTC)
    start, end = moment("since", since, month_start(now)), moment("until", until, now)
    if start >= end:
        raise InputError.field("until", f"must be later than since ({iso(start)})", until or iso(end))
    if period_count(start, end, period) > MAX_PERIODS:
        hint = "use period=month or a shorter range" if period == "day" else "use a shorter range"
        raise InputError.field("period", f"more than {MAX_PERIODS} {period}s from since to until: {hint}", period)
    report = usage_report(session, api_key_id=api_key_id, since=start, until=end, period=period)
    return {
        "since": iso(report.since),
        "until": iso(report.until),
        "period": report.period,
        "totals": report.totals.public(),
        "periods": [{"start": iso(begin), **figures.public()} for begin, figures in report.periods],
    }
