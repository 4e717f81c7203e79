"""Liability: the points outstanding at the end of each month, by the month their clock starts
(after earning: first in, first out; after inactivity: the last earning or redemption; no
expiry: one line), read for every month asked at once (`grouped_outstanding`, and after
earning `consumer_changes` with `outstanding_from_changes`)."""

import bisect
from collections import defaultdict
from collections.abc import Mapping
from datetime import date

from django.db import connection

from loyalty.models import Program
from loyalty.sql import dt

from ...models import PeriodKind
from ...periods import Period, period_containing, periods_between, span_bounds
from ..postgres import index_scans
from .common import E, M, bucket_case, day_of, period_sql
from .ledger import ledger_sums

# The members of a program whose ledger has a debit (a redemption, an expiry, a return) or a
# release: only their outstanding points depend on the order of their rows. The others hold
# every credit they were given.
_CONSUMERS_SQL = f"""
SELECT DISTINCT member_id FROM {E}
WHERE program_id = %s AND (points < 0 OR kind = 'release')
"""  # noqa: S608  # nosec B608  # table name from model metadata; values are parameters


def misdated_outstanding(program: Program, end, months: list[date]) -> dict[int, int]:
    """Outstanding points at `end`, expiry after earning, by the index in `months` (local
    first days) of the month they were earned, for a ledger whose credits are dated apart
    from when they took effect (where `grouped_outstanding` does not hold): first in, first
    out, so a balance is made of the newest credits (earned, bonus, refunded, added), each
    dated by when it was earned. One query per month end."""
    params = [program.pk, dt(end)]
    tz = program.tzinfo
    ends = [period_containing(PeriodKind.MONTH, m).bounds(tz)[1] for m in months[:-1]]
    # One pass over the member's rows, newest credit first: `newer` is the credits after
    # each one, and a credit keeps what the balance leaves of it after the newer ones.
    case, case_params = bucket_case("lots.earned", ends)
    newer = """COALESCE(SUM({credits}) OVER (
       PARTITION BY c.member_id
       ORDER BY COALESCE(c.earned_at, c.effective_at) DESC, c.id DESC
       ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
     ), 0)"""
    # The balance at `end` is the sum of the member's rows before it, in the same pass.
    # Only the members with a debit or a release go through it (`_CONSUMERS_SQL`, usually a
    # small share of the members): the others keep every credit.
    # So the outstanding points are every member's credits, summed without ordering,
    # corrected for those members by what the pass keeps of each of their credits less
    # the credit itself.
    credits = "CASE WHEN c.points > 0 AND c.kind <> 'release' THEN c.points ELSE 0 END"
    lots = f"""
  SELECT c.points, COALESCE(c.earned_at, c.effective_at) AS earned,
         c.points > 0 AND c.kind <> 'release' AS credit,
         SUM(c.points) OVER (PARTITION BY c.member_id) AS b,
         {newer.format(credits=credits)} AS newer
  FROM {E} c
  WHERE c.program_id = %s AND c.effective_at < %s
    AND c.member_id IN (SELECT member_id FROM cx)"""  # noqa: S608  # nosec B608  # table names and SQL built in this module; values are parameters
    lots_params = params
    # Credits dated by when they took effect (earned_at is only set on releases) are
    # summed by the month they took effect, the period expression that the planner has
    # statistics on (ensure_period_statistics, run by every recompute): in parallel, where a
    # sum by bucket would run in one process.
    earned_case, earned_params = bucket_case("c.earned_at", ends)
    month, month_params = period_sql("c.effective_at", PeriodKind.MONTH, program)
    sql = f"""
WITH cx AS MATERIALIZED ({_CONSUMERS_SQL})
SELECT kept.bucket, NULL, SUM(kept.points) FROM (
  SELECT {case} AS bucket,
         CASE WHEN lots.newer >= lots.b THEN 0
              WHEN lots.b - lots.newer < lots.points THEN lots.b - lots.newer
              ELSE lots.points END - lots.points AS points
  FROM ({lots}
  ) lots
  WHERE lots.credit
  UNION ALL
  SELECT {earned_case}, c.points FROM {E} c
  WHERE c.program_id = %s AND c.effective_at < %s AND c.points > 0 AND c.kind <> 'release'
    AND c.earned_at IS NOT NULL
) kept
GROUP BY 1
UNION ALL
SELECT NULL, whole.month, whole.points FROM (
  SELECT {month} AS month, SUM(c.points) AS points FROM {E} c
  WHERE c.program_id = %s AND c.effective_at < %s AND c.points > 0 AND c.kind <> 'release'
    AND c.earned_at IS NULL
  GROUP BY 1
) whole
"""  # noqa: S608  # nosec B608  # table names and SQL built in this module; values are parameters
    all_params = [
        program.pk,
        *case_params,
        *lots_params,
        *earned_params,
        *params,
        *month_params,
        *params,
    ]
    result: dict[int | None, int] = defaultdict(int)
    with connection.cursor() as cursor:
        cursor.execute(sql, all_params)
        for bucket, credited_in, points in cursor.fetchall():
            if bucket is None:
                bucket = max(0, bisect.bisect_right(months, day_of(credited_in)) - 1)
            result[int(bucket)] += int(points or 0)
    return dict(result)


def misdated_outstanding_at(program: Program, period: Period, first_day: date) -> dict[date, int]:
    """`misdated_outstanding` at the end of `period`, by the local first day of the month the
    points were earned."""
    months = [p.start for p in periods_between(PeriodKind.MONTH, first_day, period.start)]
    end = period.bounds(program.tzinfo)[1]
    return {
        None if index is None else months[index]: points
        for index, points in misdated_outstanding(program, end, months).items()
    }


_STATES_SQL = """
WITH ends(i, d) AS (VALUES {ends}),
mm AS (
  SELECT member_id, {month} AS month, SUM(points) AS s,
         SUM(CASE WHEN points > 0 AND kind <> 'release' THEN points ELSE 0 END) AS cr,
         MAX(CASE WHEN kind IN ('earn', 'redeem') THEN effective_at END) AS act
  FROM {ledger}
  WHERE program_id = %s AND effective_at < %s
  GROUP BY 1, 2
),
cum AS (
  SELECT member_id, month, cr,
         SUM(s) OVER (PARTITION BY member_id ORDER BY month ROWS UNBOUNDED PRECEDING) AS b,
         SUM(cr) OVER (PARTITION BY member_id ORDER BY month ROWS UNBOUNDED PRECEDING) AS c,
         MAX(act) OVER (PARTITION BY member_id ORDER BY month ROWS UNBOUNDED PRECEDING) AS last,
         LEAD(month) OVER (PARTITION BY member_id ORDER BY month) AS next
  FROM mm
),
st AS (
  SELECT e.i, e.d, cum.member_id, cum.b, cum.c - cum.b AS consumed, cum.last
  FROM cum JOIN ends e ON cum.month <= e.d AND (cum.next IS NULL OR e.d < cum.next)
  WHERE cum.b > 0
)
"""


_BY_INACTIVITY_SQL = """
SELECT st.i, {month}, SUM(st.b)
FROM st JOIN {members} m ON m.id = st.member_id
GROUP BY 1, 2
"""


_NO_EXPIRY_SQL = "SELECT st.i, NULL, SUM(st.b) FROM st GROUP BY 1"


# After earning, at every month end at once, as changes: a member's month m of credits keeps
# clamp(C(m) - K, 0, cr(m)) of them while K, the points consumed so far (credits - balance), is
# the member's; K only moves in the months the member has ledger rows, so each (month of
# credits m, later month n of rows) where it moves across m's credits gives one change of what m
# keeps. The sums of the changes by (n, m) are few (months x months); what month m keeps at the
# end of month d is the running sum of its changes up to d, added up in Python.
# A member without a debit or a release keeps each month of credits whole from that month on:
# one change per month of credits. So the changes are every member's credits by month (the
# last part, no ordering), corrected for the members with a debit or a release
# (`_CONSUMERS_SQL`, usually a small share of the members): at their month
# of credits, what it keeps less the credits; later, the months where K moves across them (K
# moves in few months: the pairs are joined only there, and only for months of credits that
# some later K reaches, k_hi and k_lo being K's extremes from that month on).
_KEEP = "CASE WHEN {x} <= 0 THEN 0 WHEN {x} >= m.cr THEN m.cr ELSE {x} END"


_BY_EARNING_CHANGES_SQL = """
WITH cx AS MATERIALIZED ({consumers}),
mm AS (
  SELECT member_id, {month} AS month, SUM(points) AS s,
         SUM(CASE WHEN points > 0 AND kind <> 'release' THEN points ELSE 0 END) AS cr
  FROM {ledger}
  WHERE program_id = %s AND effective_at < %s AND member_id IN (SELECT member_id FROM cx)
  GROUP BY 1, 2
),
cum AS (
  SELECT member_id, month, cr,
         CAST(SUM(cr) OVER w AS bigint) AS c,
         CAST(SUM(cr) OVER w - SUM(s) OVER w AS bigint) AS k
  FROM mm
  WINDOW w AS (PARTITION BY member_id ORDER BY month ROWS UNBOUNDED PRECEDING)
),
st AS (
  SELECT member_id, month, cr, c, k,
         LAG(k) OVER (PARTITION BY member_id ORDER BY month) AS k_prev,
         MAX(k) OVER later AS k_hi, MIN(k) OVER later AS k_lo
  FROM cum
  WINDOW later AS (
    PARTITION BY member_id ORDER BY month ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING
  )
)
SELECT m.month, m.month, SUM({keep_own} - m.cr) FROM st m WHERE m.cr > 0 GROUP BY 1
UNION ALL
SELECT n.month, m.month, SUM({keep_now} - {keep_before})
FROM st m JOIN st n ON n.member_id = m.member_id AND n.month > m.month
WHERE m.cr > 0 AND m.k_hi > m.c - m.cr AND m.k_lo < m.c AND n.k <> n.k_prev
  AND NOT ((n.k >= m.c AND n.k_prev >= m.c) OR (n.k <= m.c - m.cr AND n.k_prev <= m.c - m.cr))
GROUP BY 1, 2
"""


def consumer_changes(program: Program, months: list[Period]) -> list[tuple]:
    """The changes of what each month of credits keeps, as (month of the change, month of
    credits, points) rows, for the members with a debit or a release only: at their month of
    credits, what it keeps less the credits; later, the months where K moves across it. With
    every member's credits by month (`ledger_sums`) they make the outstanding points at
    every month's end (`outstanding_from_changes`)."""
    span = span_bounds(months[0], months[-1], program.tzinfo)
    month, month_params = period_sql("effective_at", PeriodKind.MONTH, program, span)
    sql = _BY_EARNING_CHANGES_SQL.format(
        consumers=_CONSUMERS_SQL,
        month=month,
        ledger=E,
        keep_own=_KEEP.format(x="(m.c - m.k)"),
        keep_now=_KEEP.format(x="(m.c - n.k)"),
        keep_before=_KEEP.format(x="(m.c - n.k_prev)"),
    )
    end = dt(span[1])
    # The consumers' rows come from the members' history index, which holds what the read
    # needs (`entry_member_history_kpi`, index-only: index scans on), member by member, about
    # twice as fast as bitmap scans of the table.
    with index_scans(), connection.cursor() as cursor:
        cursor.execute(sql, [program.pk, *month_params, program.pk, end])
        return [(day_of(changed), day_of(credited), int(n or 0)) for changed, credited, n in cursor]


def outstanding_from_changes(
    months: list[Period], changes: list[tuple], credits: Mapping[date, int]
) -> dict[date, dict[date | None, int]]:
    """The outstanding points at the end of every month of `months`, by month start and month
    of credits, from the consumers' changes (`consumer_changes`) and every member's credits
    by month (kept whole from that month on, less the consumers' changes): the running sum of
    each month of credits' changes, a few hundred rows."""
    by_credit: dict[date, list[tuple[date, int]]] = defaultdict(list)
    for changed_in, credited_in, points in changes:
        by_credit[credited_in].append((changed_in, points))
    for credited_in, points in credits.items():
        by_credit[credited_in].append((credited_in, points))
    result: dict[date, dict[date | None, int]] = {p.start: {} for p in months}
    for credited_in, rows in by_credit.items():
        rows.sort()
        kept, i = 0, 0
        for period in months:
            while i < len(rows) and rows[i][0] <= period.start:
                kept += rows[i][1]
                i += 1
            if kept and credited_in <= period.start:
                result[period.start][credited_in] = kept
    return result


def grouped_outstanding(
    program: Program, months: list[Period]
) -> dict[date, dict[date | None, int]] | None:
    """The outstanding points at the end of every month of `months` (in order), by month start
    and by the month their clock starts (None: they never expire), in one query: the members'
    ledger sums by month with running sums (balance, credits, last earning or redemption) give
    each member's state at each month's end; after earning, first in, first out, as the
    changes of what each month of credits keeps (`_BY_EARNING_CHANGES_SQL`, with every
    member's credits by month from `ledger_sums`). None when the ledger has credits dated
    apart from when they took effect (`earned_at` is only set on releases, which are not
    credits), where the months of credits would not follow the order of the ledger: then each
    month is read by itself (`misdated_outstanding_at`)."""
    policy = program.expiry_policy
    if policy == Program.ExpiryPolicy.AFTER_EARNING:
        end = months[-1].bounds(program.tzinfo)[1]
        sums = ledger_sums(program, PeriodKind.MONTH, end, credits=True)
        if sums.misdated:
            return None
        return outstanding_from_changes(months, consumer_changes(program, months), sums.credits)
    month, month_params = period_sql("effective_at", PeriodKind.MONTH, program)
    adapt = connection.ops.adapt_datefield_value
    ends = ", ".join("(%s, %s)" for _ in months)
    ends_params = [value for i, p in enumerate(months) for value in (i, adapt(p.start))]
    sql = _STATES_SQL.format(ends=ends, month=month, ledger=E)
    params = [*ends_params, *month_params, program.pk, dt(months[-1].bounds(program.tzinfo)[1])]
    if policy == Program.ExpiryPolicy.AFTER_INACTIVITY:
        last, last_params = period_sql(
            "COALESCE(st.last, m.enrolled_at)", PeriodKind.MONTH, program
        )
        sql += _BY_INACTIVITY_SQL.format(month=last, members=M)
        params += last_params
    else:
        sql += _NO_EXPIRY_SQL
    result: dict[date, dict[date | None, int]] = {p.start: {} for p in months}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for i, start, points in cursor.fetchall():
            key = None if start is None else day_of(start)
            result[months[int(i)].start][key] = int(points or 0)
    if policy == Program.ExpiryPolicy.NONE:
        for by_month in result.values():
            by_month.setdefault(None, 0)
    return result
