"""The UTC calendar periods GET /v1/usage reports."""

from datetime import UTC, datetime

import pytest

from models.usage import Period, period_count, period_starts


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("since", "until", "period", "starts"),
    [
        ("2026-11-01T00:00", "2026-11-03T00:00", "day", ["2026-11-01", "2026-11-02"]),
        ("2026-11-01T23:59", "2026-11-02T00:00:00.000001", "day", ["2026-11-01", "2026-11-02"]),
        ("2026-02-28T12:00", "2026-03-01T00:00", "day", ["2026-02-28"]),
        ("2026-11-15T00:00", "2027-02-01T00:00", "month", ["2026-11-01", "2026-12-01", "2027-01-01"]),
        ("2026-12-31T23:00", "2027-01-01T01:00", "month", ["2026-12-01", "2027-01-01"]),
    ],
)
def test_periods_cover_the_range_and_are_counted_without_listing(
    since: str, until: str, period: Period, starts: list[str]
) -> None:
    listed = period_starts(at(since), at(until), period)
    assert [start.date().isoformat() for start in listed] == starts
    assert all(start.tzinfo is not None and start.time().isoformat() == "00:00:00" for start in listed)
    assert period_count(at(since), at(until), period) == len(starts)


def test_a_huge_range_is_counted_at_once() -> None:
    assert period_count(at("0001-01-01T00:00"), at("9999-01-01T00:00"), "day") == 3651694  # 0001-01-01 … 9998-12-31


def test_the_last_period_of_the_calendar_ends_the_list() -> None:
    assert len(period_starts(at("9999-12-30T00:00"), at("9999-12-31T23:00"), "day")) == 2
    assert len(period_starts(at("9999-11-30T00:00"), at("9999-12-31T23:00"), "month")) == 2
