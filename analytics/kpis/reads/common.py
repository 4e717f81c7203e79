"""What the grouped reads share: the tables they read, the SQL giving the local period of a
timestamp (`period_sql`, through the time zone or among the periods' UTC bounds), and the spans
of time a read covers (`period_spans`: a read runs one query per span)."""

from datetime import date, datetime, timedelta

from django.db import connection
from django.db.models import DateField, DecimalField, ExpressionWrapper, F
from django.db.models.expressions import RawSQL

from loyalty.models import Program
from loyalty.sql import dt
from members.models import Member, PointsEntry, Purchase

from ...periods import period_containing, utc_midnight

E = PointsEntry._meta.db_table
P = Purchase._meta.db_table
M = Member._meta.db_table


# The unit of the grouped reads that several period kinds add up (`grouped_facts_of_kinds`).
DAY = "day"


NET_AMOUNT = ExpressionWrapper(
    F("total_amount") - F("returned_amount"),
    output_field=DecimalField(max_digits=14, decimal_places=2),
)

# A read's time ranges: [lo, hi) UTC instants, in order, apart from each other.
Spans = list[tuple[datetime, datetime]]


def merge_spans(spans) -> Spans:
    """`spans` ([lo, hi) pairs, in any order) in order, those that touch or overlap merged."""
    merged: Spans = []
    for lo, hi in sorted(spans):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


def period_spans(periods, tz) -> Spans:
    """The UTC spans of `periods` (a set of periods of any kinds), merged (`merge_spans`)."""
    return merge_spans(period.bounds(tz) for period in periods)


def period_sql(column: str, kind: str, program: Program, span=None) -> tuple[str, list]:
    """SQL giving the local first day of the `kind` period (month, week from Monday, quarter,
    or day) that the timestamp `column` falls in, in the program's time zone, and its
    parameters. PostgreSQL: CAST(DATE_TRUNC(kind, column AT TIME ZONE tz) AS date); SQLite:
    Django's django_datetime_trunc function, cut to the date.

    With `span` (lo, hi: aware datetimes) on PostgreSQL, the timestamps from lo to hi find
    their period among the periods' UTC bounds instead (`_bucket_sql`), and only the others
    go through the time zone."""
    sql, params = connection.ops.datetime_trunc_sql(kind, column, (), program.time_zone)
    if connection.vendor == "sqlite":
        return f"substr({sql}, 1, 10)", list(params)
    sql, params = f"CAST({sql} AS date)", list(params)
    if span is None:
        return sql, params
    starts, bounds = period_bounds(kind, program.tzinfo, *span)
    return _bucket_sql(column, sql), [starts, bounds, *params]


# Turning a timestamp into local time costs PostgreSQL a look-up of the zone's rules for each
# row, a large part of a read over every purchase.
# A binary search among the periods' UTC bounds (WIDTH_BUCKET over a constant array) and the
# period's first day taken from a second array cost a third of it. A timestamp outside the
# bounds (bucket 0, or past the last start) finds no first day and falls back on the time zone,
# so that the result is that of the time zone for every row.
def _bucket_sql(column: str, fallback: str) -> str:
    return (
        f"COALESCE((CAST(%s AS date[]))[WIDTH_BUCKET({column}, CAST(%s AS timestamptz[]))], "
        f"{fallback})"
    )


# The bucket arrays' length at most: about 11 years of days (older timestamps fall back).
MAX_BUCKETS = 4000


def period_bounds(kind: str, tz, lo, hi) -> tuple[list[date], list[datetime]]:
    """The first local days of the `kind` periods (or days) that [lo, hi) overlaps, and their
    starts as UTC datetimes followed by the end of the last one (local midnights in `tz`): the
    i-th start holds the timestamps from the i-th bound to the next one. At most
    `MAX_BUCKETS` periods, the last ones."""
    day = lo.astimezone(tz).date()
    start = day if kind == DAY else period_containing(kind, day).start
    starts: list[date] = []
    while True:
        end = start + timedelta(days=1) if kind == DAY else period_containing(kind, start).end
        starts.append(start)
        if utc_midnight(end, tz) >= hi:
            break
        start = end
    starts = starts[-MAX_BUCKETS:]
    bounds = [utc_midnight(start, tz) for start in starts] + [utc_midnight(end, tz)]
    return starts, bounds


def period_annotation(model, column: str, kind: str, program: Program, span=None) -> RawSQL:
    qn = connection.ops.quote_name
    sql, params = period_sql(f"{qn(model._meta.db_table)}.{qn(column)}", kind, program, span)
    # The SQL is built from model metadata and the ops of the connection; values are params.
    return RawSQL(sql, params, output_field=DateField())  # noqa: S611  # nosec B611  # SQL from model metadata and connection ops; values are parameters


def day_of(value) -> date:
    """A period start read by hand-written SQL: a date (PostgreSQL) or 'YYYY-MM-DD' (SQLite)."""
    if isinstance(value, str):
        return date.fromisoformat(value[:10])
    if isinstance(value, datetime):
        return value.date()
    return value


def bucket_case(column: str, ends: list) -> tuple[str, list]:
    """SQL giving the index of the first bound in `ends` (increasing, contiguous months) that
    `column` (never NULL) is below, the last index catching everything later, and its
    parameters. The bounds are tried from the newest: most rows are recent (outstanding
    points, members), and a credit of the last month then costs one comparison, not one per
    month of history."""
    if not ends:
        return "0", []
    n = len(ends)
    whens = " ".join(f"WHEN {column} >= %s THEN {i + 1}" for i in reversed(range(n)))
    return f"CASE {whens} ELSE 0 END", [dt(end) for end in reversed(ends)]
