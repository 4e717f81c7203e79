"""Segments: rule-based groups of members, recomputed in SQL (nightly, or by staff on demand).

A segment (loyalty.models.Segment) sets any of: minimum RFM scores, inactivity, tier,
enrolment cohort; a member belongs when every condition set holds. The refresh replaces the
segment's `SegmentMembership` rows with one INSERT ... SELECT and stores the count on the
segment (what staff see in the admin). Campaigns use the memberships of the last refresh.

RFM scores are quintiles (NTILE(5), 5 best) over the members of the program with at least one
purchase in the 365 days before the refresh: recency by the date of the last purchase,
frequency by the number of purchases, monetary by the spend net of returns. Members without a
purchase in that year score 0 (so any minimum score excludes them). Members with equal values
may fall into neighbouring quintiles (ranks are split evenly).
"""

from datetime import datetime, time, timedelta

from django.db import connection, transaction
from django.utils import timezone

from loyalty.models import Program, Segment
from loyalty.sql import dt

from ..batches import Context, batch_transaction
from ..models import Member, Purchase, SegmentMembership

M = Member._meta.db_table
P = Purchase._meta.db_table
S = SegmentMembership._meta.db_table
RFM_DAYS = 365

_REFRESH_SQL = f"""
INSERT INTO {S} (segment_id, member_id)
WITH stats AS (
    SELECT member_id, MAX(occurred_at) AS last_at, COUNT(*) AS n,
           SUM(total_amount - returned_amount) AS spend
    FROM {P}
    WHERE program_id = %s AND member_id IS NOT NULL AND occurred_at >= %s AND occurred_at < %s
    GROUP BY member_id
), scored AS (
    SELECT member_id,
           NTILE(5) OVER (ORDER BY last_at, member_id) AS r,
           NTILE(5) OVER (ORDER BY n, member_id) AS f,
           NTILE(5) OVER (ORDER BY spend, member_id) AS m
    FROM stats
)
SELECT %s, mm.id
FROM {M} mm LEFT JOIN scored s ON s.member_id = mm.id
WHERE mm.program_id = %s AND mm.status = 'active' {{conditions}}
"""  # noqa: S608  # nosec B608  # table names from model metadata, conditions from _CONDITIONS; values are parameters

# The conditions a segment may set: (field, SQL with one parameter).
_CONDITIONS = (
    ("min_recency_score", "COALESCE(s.r, 0) >= %s"),
    ("min_frequency_score", "COALESCE(s.f, 0) >= %s"),
    ("min_monetary_score", "COALESCE(s.m, 0) >= %s"),
    ("inactive_since", "COALESCE(mm.last_activity_at, mm.enrolled_at) < %s"),
    ("tier_id", "mm.tier_id = %s"),
    ("enrolled_from", "mm.enrolled_at >= %s"),
    ("enrolled_until", "mm.enrolled_at < %s"),
)


def _midnight(program: Program, day):
    if day is None:
        return None
    return dt(datetime.combine(day, time(0), tzinfo=program.tzinfo))


def refresh_segment(segment: Segment, *, now: datetime) -> int:
    """Recompute the segment's members as of `now`; return how many there are. The caller
    may hold a transaction (the nightly job does); otherwise one is opened."""
    program = segment.program
    values = {
        "min_recency_score": segment.min_recency_score,
        "min_frequency_score": segment.min_frequency_score,
        "min_monetary_score": segment.min_monetary_score,
        "inactive_since": (
            dt(now - timedelta(days=segment.inactive_days))
            if segment.inactive_days is not None
            else None
        ),
        "tier_id": segment.tier_id,
        "enrolled_from": _midnight(program, segment.enrolled_from),
        "enrolled_until": _midnight(program, segment.enrolled_until),
    }
    conditions = "".join(f" AND {sql}" for name, sql in _CONDITIONS if values[name] is not None)
    params = [program.pk, dt(now - timedelta(days=RFM_DAYS)), dt(now), segment.pk, program.pk]
    params += [values[name] for name, _sql in _CONDITIONS if values[name] is not None]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {S} WHERE segment_id = %s", [segment.pk])  # noqa: S608  # nosec B608  # table name from model metadata; values are parameters
        cursor.execute(_REFRESH_SQL.format(conditions=conditions), params)
        count = cursor.rowcount
        Segment.objects.filter(pk=segment.pk).update(member_count=count, refreshed_at=now)
    segment.member_count, segment.refreshed_at = count, now
    return count


def refresh_segments(ctx: Context) -> dict:
    """The nightly job: refresh every segment of the program, one transaction each."""
    summary = {}
    for segment in Segment.objects.filter(program=ctx.program).order_by("pk"):
        with batch_transaction(ctx):
            summary[segment.name] = refresh_segment(segment, now=ctx.now)
    return summary


def refresh_now(segment: Segment) -> int:
    """Refresh one segment at once (the admin action)."""
    return refresh_segment(segment, now=timezone.now())
