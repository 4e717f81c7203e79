"""The period of a timestamp found among the periods' UTC bounds (`period_sql` with a
span) is the period the time zone gives, for every kind, on both sides of the span's bounds,
at local midnights and across the changes of summer time."""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection

from analytics.kpis.reads.common import MAX_BUCKETS, period_bounds, period_sql
from analytics.periods import period_containing
from tests.factories import ProgramFactory

pytestmark = pytest.mark.django_db

KINDS = ("day", "week", "month", "quarter")


def test_bounds_are_the_local_midnights_of_each_period():
    tz = ZoneInfo("Europe/Paris")
    lo = datetime(2026, 2, 14, 12, tzinfo=UTC)
    hi = datetime(2026, 4, 30, 22, tzinfo=UTC)  # 1 May 00:00 in Paris
    starts, bounds = period_bounds("month", tz, lo, hi)
    assert starts == [date(2026, 2, 1), date(2026, 3, 1), date(2026, 4, 1)]
    assert bounds == [
        datetime(2026, 1, 31, 23, tzinfo=UTC),  # winter time: UTC+1
        datetime(2026, 2, 28, 23, tzinfo=UTC),
        datetime(2026, 3, 31, 22, tzinfo=UTC),  # summer time from 29 March: UTC+2
        datetime(2026, 4, 30, 22, tzinfo=UTC),
    ]
    # A day past the last local midnight takes the next period in.
    starts, bounds = period_bounds("week", tz, lo, hi + timedelta(seconds=1))
    assert starts[0] == date(2026, 2, 9)
    assert starts[-1] == date(2026, 4, 27)
    assert bounds[-1] == datetime(2026, 5, 3, 22, tzinfo=UTC)
    assert len(bounds) == len(starts) + 1 == 13


def test_bounds_keep_the_last_periods_at_most():
    tz = ZoneInfo("UTC")
    hi = datetime(2026, 1, 1, tzinfo=UTC)
    starts, bounds = period_bounds("day", tz, hi - timedelta(days=5000), hi)
    assert len(starts) == MAX_BUCKETS
    assert starts[-1] == date(2025, 12, 31)
    assert bounds[0] == datetime.combine(starts[0], datetime.min.time(), tzinfo=UTC)


@pytest.mark.parametrize("time_zone", ["Europe/Paris", "America/Santiago", "Asia/Kolkata"])
def test_bucketed_period_is_the_time_zone_period(time_zone):
    program = ProgramFactory(time_zone=time_zone)
    tz = ZoneInfo(time_zone)
    lo = datetime(2025, 3, 20, tzinfo=tz)
    hi = datetime(2025, 10, 8, tzinfo=tz)
    # Every local midnight of the span and the instants just around it, hourly instants
    # across the changes of summer time, and instants before and after the span (which fall
    # back on the time zone).
    instants = set()
    day = lo - timedelta(days=40)
    while day < hi + timedelta(days=40):
        midnight = datetime.combine(day.date(), datetime.min.time(), tzinfo=tz)
        for delta in (-1, 0, 1):
            instants.add((midnight + timedelta(seconds=delta)).astimezone(UTC))
        day += timedelta(days=1)
    start = datetime(2025, 3, 28, tzinfo=UTC)
    instants.update(start + timedelta(hours=h) for h in range(24 * 14))
    start = datetime(2025, 10, 20, tzinfo=UTC)
    instants.update(start + timedelta(hours=h) for h in range(24 * 14))
    instants = sorted(instants)
    for kind in KINDS:
        plain, plain_params = period_sql("t", kind, program)
        bucketed, bucketed_params = period_sql("t", kind, program, (lo, hi))
        if connection.vendor == "postgresql":
            assert "WIDTH_BUCKET" in bucketed
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE TEMPORARY TABLE instants (t timestamp with time zone)"
                if connection.vendor == "postgresql"
                else "CREATE TEMPORARY TABLE instants (t datetime)"
            )
            cursor.executemany("INSERT INTO instants (t) VALUES (%s)", [[t] for t in instants])
            cursor.execute(
                f"SELECT t, {plain}, {bucketed} FROM instants ORDER BY t",  # noqa: S608
                [*plain_params, *bucketed_params],
            )
            rows = cursor.fetchall()
            cursor.execute("DROP TABLE instants")
        assert len(rows) == len(instants)
        mismatched = [(t, a, b) for t, a, b in rows if str(a) != str(b)]
        assert not mismatched, (kind, mismatched[:5])
        # And it is the local period of each instant, as Python finds it.
        for t, period, _ in rows:
            local = (t if isinstance(t, datetime) else datetime.fromisoformat(t)).astimezone(tz)
            if kind == "day":
                expected = local.date()
            else:
                expected = period_containing(kind, local.date()).start
            assert str(period)[:10] == expected.isoformat(), (kind, t)
