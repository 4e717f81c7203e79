"""Member activity: each member's active periods (a counted purchase in them), their previous
active period, their stores and their enrolment month, grouped into a few rows per period:
active members (of the program, of each store and channel), repeat buyers, members retained
from P-1, and the cohorts' active members."""

from django.db import connection

from loyalty.models import Program
from loyalty.sql import dt

from ...models import PeriodKind
from ..postgres import local_settings
from .common import M, P, Spans, period_sql

# A member's stores of a period ride along as bit masks of 63 stores each (bit i of mask k:
# the program's store number 63k + i): the masks of a period are few (most members buy in one
# or two stores), so the rows grouped by them stay few.
STORES_PER_MASK = 63


def store_masks(store_ids) -> list[list[int]]:
    """Store ids (a program's) in chunks of `STORES_PER_MASK`, in id order: chunk k is mask
    k, its i-th store bit i."""
    ids = sorted(store_ids)
    return [ids[i : i + STORES_PER_MASK] for i in range(0, len(ids), STORES_PER_MASK)] or [[]]


def mask_aggregates(masks: list[list[int]], store: str) -> tuple[list, list]:
    """SQL aggregates `s0`, `s1`... giving the masks of the stores (column `store`) of the
    rows grouped, and their parameters: BIT_OR of the stores' bits on PostgreSQL,
    SUM(DISTINCT ...) of them on SQLite."""
    aggregate = "BIT_OR({})" if connection.vendor == "postgresql" else "SUM(DISTINCT {})"
    aggregates, params = [], []
    for k, store_ids in enumerate(masks):
        whens = " ".join("WHEN %s THEN CAST(%s AS bigint)" for _ in store_ids)
        bits = f"CASE {store} {whens} ELSE 0 END" if store_ids else "0"
        aggregates.append(f"{aggregate.format(bits)} AS s{k}")
        for i, store_id in enumerate(store_ids):
            params += [store_id, 1 << i]
    return aggregates, params


def count_masked(
    store_active: dict, channel_active: dict, masks: list[list[int]], bits, channel_of, n: int
) -> None:
    """Add `n` members to `store_active` for each store whose bit is set in `bits` (one mask
    value per chunk of `masks`), and to `channel_active` once for each of their channels."""
    stores = [
        store_id
        for mask, store_ids in zip(bits, masks, strict=True)
        for i, store_id in enumerate(store_ids)
        if int(mask or 0) >> i & 1
    ]
    for store_id in stores:
        store_active[store_id] += n
    for channel in {channel_of[store_id] for store_id in stores}:
        channel_active[channel] += n


_ACTIVITY_SQL = """
WITH act AS (
  SELECT p.member_id, {period} AS period, COUNT(*) AS n{mask_aggregates}
  FROM {purchases} p
  WHERE p.program_id = %s AND p.occurred_at >= %s AND p.occurred_at < %s
    AND p.total_amount > p.returned_amount AND p.member_id IS NOT NULL
  GROUP BY 1, 2
),
seq AS (
  SELECT member_id, period, n{mask_columns},
         LAG(period) OVER (PARTITION BY member_id ORDER BY period) AS prev
  FROM act
),
combos AS (
  SELECT seq.period AS period, seq.prev AS prev, {cohort} AS cohort{seq_masks},
         COUNT(*) AS members, SUM(CASE WHEN seq.n >= 2 THEN 1 ELSE 0 END) AS repeaters
  FROM seq {join}
  GROUP BY {combo_keys}
)
SELECT 'pairs', period, prev, cohort, SUM(members), SUM(repeaters){null_masks}
FROM combos GROUP BY period, prev, cohort
UNION ALL
SELECT 'stores', period, NULL, NULL, SUM(members), NULL{mask_columns}
FROM combos GROUP BY period{mask_columns}
"""


def member_activity(
    program: Program, kind: str, spans: Spans, masks: list[list[int]]
) -> list[tuple]:
    """Set-based member activity over `spans`, from the distinct (member, period) pairs,
    each with the member's previous active period (LAG), the stores they bought in (`masks`:
    `store_masks`) and, for month periods, their enrolment month. Rows of two kinds:
    ('pairs', period, previous active period, enrolment month or None, members, members with
    two purchases or more), so that retention is the pairs whose previous period is P-1 and
    cohorts the pairs by enrolment month; ('stores', period, None, None, members, None,
    mask...), the members of the period who bought in exactly the stores of the masks, so
    that the active members of a store or a channel are sums over the masks that hold it.

    One query per span: bounded by it, each reads its range of an index. A member's previous
    active period is found within the span, which holds P-1 with every period P asked for."""
    return [row for lo, hi in spans for row in _activity(program, kind, lo, hi, masks)]


def _activity(program: Program, kind: str, lo, hi, masks: list[list[int]]) -> list[tuple]:
    """`member_activity` over [lo, hi)."""
    period, period_params = period_sql("p.occurred_at", kind, program, (lo, hi))
    aggregates, mask_params = mask_aggregates(masks, "p.store_id")
    columns = [f"s{k}" for k in range(len(masks))]
    cohort_params: list = []
    if kind == PeriodKind.MONTH:
        # The enrolment month of each member once, not once per (member, period) pair.
        cohort, cohort_params = period_sql("enrolled_at", kind, program, (lo, hi))
        join = (
            f"JOIN (SELECT id, {cohort} AS cohort FROM {M} WHERE program_id = %s) m"  # noqa: S608  # nosec B608  # table names and SQL built in this module; values are parameters
            " ON m.id = seq.member_id"
        )
        cohort = "m.cohort"
        cohort_params.append(program.pk)
    else:
        cohort, join = "NULL", ""
    sql = _ACTIVITY_SQL.format(
        period=period,
        purchases=P,
        mask_aggregates="".join(f", {aggregate}" for aggregate in aggregates),
        mask_columns="".join(f", {column}" for column in columns),
        seq_masks="".join(f", seq.{column}" for column in columns),
        null_masks=", NULL" * len(columns),
        cohort=cohort,
        join=join,
        combo_keys=", ".join(str(i) for i in range(1, 4 + len(columns))),
    )
    params = [*period_params, *mask_params, program.pk, dt(lo), dt(hi), *cohort_params]
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            cursor.execute(sql, params)
            return cursor.fetchall()
        # Over the whole history, the purchases come in member order from the member index,
        # which holds what the read needs (`purchase_member_occurred_kpi`, an index-only
        # scan): no sort of the program's purchases, a large part of this read otherwise.
        # Over a few periods, from their range of the (program, occurred_at) index.
        # The pairs come out of LAG in member order too: merged with the members in id order,
        # where the planner would otherwise hash the members in batches and probe them once
        # per pair.
        wanted = {"enable_indexscan": "on"}
        if join:
            wanted["enable_hashjoin"] = "off"
        with local_settings(cursor, wanted):
            cursor.execute(sql, params)
            return cursor.fetchall()
