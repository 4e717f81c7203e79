"""Reporting periods: local calendar months, weeks (Monday to Sunday) and quarters in the
program's time zone, with their bounds as UTC instants for `occurred_at >= start AND
occurred_at < end` filters that the (program, occurred_at) indexes serve."""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from members.tiers import add_months

from .models import PeriodKind


@dataclass(frozen=True, order=True)
class Period:
    kind: str
    start: date  # first local day
    end: date  # first local day of the next period

    def shift(self, n: int) -> "Period":
        """The period `n` periods later (earlier when negative)."""
        if self.kind == PeriodKind.WEEK:
            return period_containing(self.kind, self.start + timedelta(weeks=n))
        months = 3 if self.kind == PeriodKind.QUARTER else 1
        return period_containing(self.kind, add_months(self.start, n * months))

    def year_before(self) -> "Period":
        """The same period a year earlier: 12 months, 4 quarters or 52 weeks back."""
        return self.shift({PeriodKind.MONTH: -12, PeriodKind.QUARTER: -4}.get(self.kind, -52))

    def bounds(self, tz) -> tuple[datetime, datetime]:
        """[start, end) as aware UTC datetimes: local midnights in time zone `tz`."""
        return utc_midnight(self.start, tz), utc_midnight(self.end, tz)


def span_bounds(first: Period, last: Period, tz) -> tuple[datetime, datetime]:
    """[first's start, last's end) as aware UTC datetimes, in time zone `tz`."""
    return first.bounds(tz)[0], last.bounds(tz)[1]


def utc_midnight(day: date, tz) -> datetime:
    return datetime.combine(day, time.min, tzinfo=tz).astimezone(UTC)


def period_containing(kind: str, day: date) -> Period:
    if kind == PeriodKind.WEEK:
        start = day - timedelta(days=day.weekday())
        return Period(kind, start, start + timedelta(weeks=1))
    if kind == PeriodKind.QUARTER:
        start = date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)
        return Period(kind, start, add_months(start, 3))
    if kind == PeriodKind.MONTH:
        start = day.replace(day=1)
        return Period(kind, start, add_months(start, 1))
    raise ValueError(f"unknown period kind {kind!r}")


def periods_between(kind: str, first: date, last: date) -> list[Period]:
    """The periods from the one containing `first` to the one containing `last`, in order."""
    period, stop = period_containing(kind, first), period_containing(kind, last)
    periods = []
    while period <= stop:
        periods.append(period)
        period = period.shift(1)
    return periods
