"""Members: the program's first active day, enrolments by period (members to date, new
members, cohort sizes) and the changes of members per tier by period (members per tier at the
end of each period)."""

from datetime import date

from django.db import connection
from django.db.models import Count, Min

from loyalty.models import Program
from loyalty.sql import dt
from members.models import Member, PointsEntry, Purchase, TierChange

from .common import M, period_annotation, period_sql


def first_activity_day(program: Program) -> date | None:
    """The local date of the program's first purchase, ledger row or enrolment."""
    firsts = [
        Purchase.objects.filter(program=program).aggregate(t=Min("occurred_at"))["t"],
        PointsEntry.objects.filter(program=program).aggregate(t=Min("effective_at"))["t"],
        Member.objects.filter(program=program).aggregate(t=Min("enrolled_at"))["t"],
    ]
    firsts = [t for t in firsts if t is not None]
    if not firsts:
        return None
    return min(firsts).astimezone(program.tzinfo).date()


_TIER_EVENTS_SQL = """
WITH ch AS (
  SELECT c.member_id, c.created_at, c.from_tier_id,
         LEAD(c.from_tier_id) OVER (PARTITION BY c.member_id ORDER BY c.created_at, c.id)
           AS next_from,
         LEAD(c.id) OVER (PARTITION BY c.member_id ORDER BY c.created_at, c.id) AS next_id,
         ROW_NUMBER() OVER (PARTITION BY c.member_id ORDER BY c.created_at, c.id) AS k
  FROM {changes} c WHERE c.program_id = %s
),
ev AS (
  SELECT m.enrolled_at AS at,
         CASE WHEN f.member_id IS NULL THEN m.tier_id ELSE f.from_tier_id END AS tier, 1 AS d
  FROM {members} m LEFT JOIN ch f ON f.member_id = m.id AND f.k = 1
  WHERE m.program_id = %s
  UNION ALL
  SELECT CASE WHEN ch.created_at > m.enrolled_at THEN ch.created_at ELSE m.enrolled_at END,
         ch.from_tier_id, -1
  FROM ch JOIN {members} m ON m.id = ch.member_id
  UNION ALL
  SELECT CASE WHEN ch.created_at > m.enrolled_at THEN ch.created_at ELSE m.enrolled_at END,
         CASE WHEN ch.next_id IS NULL THEN m.tier_id ELSE ch.next_from END, 1
  FROM ch JOIN {members} m ON m.id = ch.member_id
)
SELECT {period} AS period, ev.tier, SUM(ev.d) FROM ev
WHERE ev.at < %s
GROUP BY 1, 2
"""


def tier_deltas(program: Program, kind: str, since, hi) -> list[tuple]:
    """Members per tier as (period, tier id, change) rows before `hi`, so that the members per
    tier at the end of P are the sums over the periods up to P. It states `members_per_tier`
    as events: a member's tier at an instant is the tier their first tier change after it moved
    them from, or their tier now; so enrolment adds them to the tier their first change moved
    them from (their tier now without a change), and each change moves them from its tier to
    the next change's (the last one: to their tier now). A change recorded before the member's
    enrolment date counts at the enrolment. `since`: the program's first activity, from
    which the periods are found by their bounds (`period_sql`)."""
    period, period_params = period_sql("ev.at", kind, program, (since, hi))
    sql = _TIER_EVENTS_SQL.format(changes=TierChange._meta.db_table, members=M, period=period)
    params = [program.pk, program.pk, *period_params, dt(hi)]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def enrolments(program: Program, kind: str, since, hi) -> dict[date, int]:
    """Enrolments by period before `hi` (and so members at the end of each period, and cohort
    sizes), by period start; `since` as for `tier_deltas`."""
    return dict(
        Member.objects.filter(program=program, enrolled_at__lt=hi)
        .annotate(period=period_annotation(Member, "enrolled_at", kind, program, (since, hi)))
        .values("period")
        .annotate(n=Count("pk"))
        .order_by()
        .values_list("period", "n")
    )
