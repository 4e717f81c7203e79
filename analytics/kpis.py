"""The KPIs of DOMAIN.md, computed in the database per program and period (docs/kpis.md).

Every figure of a period comes from a handful of set-based queries (ORM aggregates, and
portable SQL for the liability and cohorts) filtered on `occurred_at`/`effective_at`/
`enrolled_at >= start AND < end`, the period's bounds as UTC instants, so that the
(program, time) indexes serve them. Python only divides and rounds the few totals they return;
it never loops over members or purchases.

What counts:
- A purchase counts in the period it occurred in, for its amount net of what was returned
  (`total_amount - returned_amount`, whenever the return happened); a purchase returned in full
  does not count at all (it is not a purchase, and makes nobody active).
- Member purchases have a member; anonymous purchases (no member) are the non-member baseline.
- Ledger figures are sums by kind of the rows effective in the period.

Rounding: money and percentages to 0.01 (half up), from unrounded inputs.
"""

import bisect
import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import partial

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import (
    Count,
    DateField,
    DecimalField,
    Exists,
    ExpressionWrapper,
    F,
    Min,
    OuterRef,
    Q,
    Sum,
)
from django.db.models.expressions import RawSQL

from loyalty.models import Program, ProgramCost, Store
from loyalty.sql import dt
from members.models import CampaignAward, Member, PointsEntry, Purchase, TierChange
from members.tiers import add_months
from rewards.models import Redemption

from .models import Dimension, Metric, PeriodKind
from .periods import Period, period_containing, periods_between, span_bounds, utc_midnight

logger = logging.getLogger(__name__)

CENT = Decimal("0.01")
HUNDRED = Decimal(100)
E = PointsEntry._meta.db_table
P = Purchase._meta.db_table
M = Member._meta.db_table
# The unit of the grouped reads that several period kinds add up (`grouped_facts_of_kinds`).
DAY = "day"

NET_AMOUNT = ExpressionWrapper(
    F("total_amount") - F("returned_amount"),
    output_field=DecimalField(max_digits=14, decimal_places=2),
)


def money(value) -> Decimal:
    return Decimal(str(value or 0)).quantize(CENT, ROUND_HALF_UP)


def divide(numerator, denominator, scale: Decimal = Decimal(1)) -> Decimal | None:
    """numerator / denominator x scale, rounded to 0.01; None when the denominator is 0."""
    if not denominator:
        return None
    return (Decimal(numerator) * scale / Decimal(denominator)).quantize(CENT, ROUND_HALF_UP)


def exact(value) -> str:
    """A Decimal input as stored in `inputs` (a string, so JSON keeps every digit)."""
    return str(value)


@dataclass
class Figure:
    metric: str
    value: Decimal | None
    numerator: Decimal | None = None
    denominator: Decimal | None = None
    inputs: dict = field(default_factory=dict)
    dimension: str = Dimension.PROGRAM
    key: str = ""
    store_id: int | None = None


@dataclass
class LiabilityRow:
    expiry_month: date | None
    points: int
    amount: Decimal
    expected_breakage_points: int
    expected_breakage_amount: Decimal


@dataclass
class CohortCell:
    cohort_month: date
    months_after: int
    members: int
    active: int
    rate: Decimal | None


@dataclass
class PeriodResult:
    period: Period
    figures: list[Figure]
    liability: list[LiabilityRow]  # month periods only
    cohorts: list[CohortCell]  # month periods only
    points_to_date: dict[str, int]  # ledger sums by kind at the end of the period


# Purchases --------------------------------------------------------------------------------------


def counted_purchases(program: Program, start, end):
    """The purchases that count in [start, end): occurred then, not returned in full."""
    return Purchase.objects.filter(
        program=program,
        occurred_at__gte=start,
        occurred_at__lt=end,
        total_amount__gt=F("returned_amount"),
    )


# The purchase sums of a group of counted purchases; its active members are counted apart
# (the member activity, `period_sales`), a member active in two stores being one.
# (A count of `occurred_at`, never null, not of the id: the id is in no index, where the
# other columns are in the covering ones.)
_PURCHASE_SUMS = {
    "member_purchases": Count("occurred_at", filter=Q(member__isnull=False)),
    "member_revenue": Sum(NET_AMOUNT, filter=Q(member__isnull=False)),
    "anon_purchases": Count("occurred_at", filter=Q(member__isnull=True)),
    "anon_revenue": Sum(NET_AMOUNT, filter=Q(member__isnull=True)),
}


# The sales facts of one period and the one before, in two grouped reads of their purchases,
# none of which keeps a row per (member, store) pair of both periods: sums per (store, period),
# and each member's purchases in P and in P-1 (active, retained, repeat buyers) with the stores
# they bought in during P as bit masks (`store_masks`), counted by masks: the members of a
# store or a channel are the sums over the masks that hold it. (Grouping by member, store and
# period first, then aggregating that set four ways, took 15.7 s for a quarter at a million
# members; three reads, the distinct members per store and channel in one of their own, about
# 9 s.)
_PERIOD_STORE_SUMS_SQL = """
SELECT store_id, occurred_at >= %s AS cur,
       COUNT(*) FILTER (WHERE member_id IS NOT NULL),
       SUM(total_amount - returned_amount) FILTER (WHERE member_id IS NOT NULL),
       COUNT(*) FILTER (WHERE member_id IS NULL),
       SUM(total_amount - returned_amount) FILTER (WHERE member_id IS NULL)
FROM {purchases}
WHERE program_id = %s AND occurred_at >= %s AND occurred_at < %s
  AND total_amount > returned_amount
GROUP BY 1, 2
"""
_PERIOD_MEMBERS_SQL = """
SELECT COUNT(*) FILTER (WHERE n_cur > 0),
       COUNT(*) FILTER (WHERE n_prev > 0),
       COUNT(*) FILTER (WHERE n_cur > 0 AND n_prev > 0),
       COUNT(*) FILTER (WHERE n_cur >= 2){mask_columns}
FROM (
  SELECT member_id,
         COUNT(*) FILTER (WHERE occurred_at >= %s) AS n_cur,
         COUNT(*) FILTER (WHERE occurred_at < %s) AS n_prev{mask_aggregates}
  FROM {purchases}
  WHERE program_id = %s AND occurred_at >= %s AND occurred_at < %s
    AND total_amount > returned_amount AND member_id IS NOT NULL
  GROUP BY member_id
) per_member
GROUP BY {mask_keys}
"""


# A member's stores of a period ride along as bit masks of 63 stores each (bit i of mask k:
# the program's store number 63k + i): the masks of a period are few (most members buy in one
# or two stores), so the rows grouped by them stay few.
STORES_PER_MASK = 63


def store_masks(store_ids) -> list[list[int]]:
    """Store ids (a program's) in chunks of `STORES_PER_MASK`, in id order: chunk k is mask
    k, its i-th store bit i."""
    ids = sorted(store_ids)
    return [ids[i : i + STORES_PER_MASK] for i in range(0, len(ids), STORES_PER_MASK)] or [[]]


def _mask_aggregates(
    masks: list[list[int]], store: str, when: str = "", when_params: tuple = ()
) -> tuple[list, list]:
    """SQL aggregates `s0`, `s1`... giving the masks of the stores (column `store`) of the
    rows grouped (those meeting the SQL condition `when`, with `when_params`, if given), and
    their parameters: BIT_OR of the stores' bits on PostgreSQL, SUM(DISTINCT ...) of them on
    SQLite."""
    aggregate = "BIT_OR({})" if connection.vendor == "postgresql" else "SUM(DISTINCT {})"
    aggregates, params = [], []
    for k, store_ids in enumerate(masks):
        whens = " ".join("WHEN %s THEN CAST(%s AS bigint)" for _ in store_ids)
        bits = f"CASE {store} {whens} ELSE 0 END" if store_ids else "0"
        if when:
            bits = f"CASE WHEN {when} THEN {bits} ELSE 0 END"
            params += when_params
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


def channel_rows(store_rows: list[dict], channel_of, channel_active: dict) -> list[dict]:
    """The sales of each channel (`store__channel`, by channel) from its stores' rows, with
    the channel's active members (a member of two of its stores is one)."""
    of_channel = defaultdict(list)
    for row in store_rows:
        of_channel[channel_of[row["store_id"]]].append(row)
    return [
        {"store__channel": channel, **_add_totals(rows, channel_active.get(channel, 0))}
        for channel, rows in sorted(of_channel.items())
    ]


@dataclass
class PeriodSales:
    totals: dict  # the program's, keyed as _ZERO_TOTALS
    by_store: list[dict]  # by store id
    by_channel: list[dict]  # by channel
    previous_active: int
    previous_revenue: Decimal | None  # member revenue of P-1
    retained: int  # active in P-1 and in P
    repeaters: int  # two purchases or more in P


def _decimal(value) -> Decimal | None:
    """A sum read by hand-written SQL (SQLite may give a float or int for a decimal column)."""
    return None if value is None else Decimal(str(value)).quantize(CENT)


def period_sales(
    program: Program, period: Period, *, previous_revenue: Decimal | None = None
) -> PeriodSales:
    """Member and anonymous purchases, their net revenue and the active members of `period`,
    for the program, per store and per channel; the active members and member revenue of P-1;
    the members retained (|active(P-1) ∩ active(P)|) and the repeat buyers (two purchases or
    more in P): two grouped reads of the purchases of P-1 and P. When P-1's member revenue
    is given (known from its snapshot), the sums read P alone."""
    tz = program.tzinfo
    start, end = dt(period.bounds(tz)[0]), dt(period.bounds(tz)[1])
    previous_start = dt(period.shift(-1).bounds(tz)[0])
    sums_from = previous_start if previous_revenue is None else start
    channel_of = dict(Store.objects.filter(program=program).values_list("pk", "channel"))
    masks = store_masks(channel_of)
    aggregates, mask_params = _mask_aggregates(
        masks, "store_id", when="occurred_at >= %s", when_params=(start,)
    )
    columns = [f"s{k}" for k in range(len(masks))]
    members_sql = _PERIOD_MEMBERS_SQL.format(
        purchases=P,
        mask_columns="".join(f", {column}" for column in columns),
        mask_aggregates="".join(f", {aggregate}" for aggregate in aggregates),
        mask_keys=", ".join(columns),
    )
    active = previous_active = retained = repeaters = 0
    store_active: dict[int, int] = defaultdict(int)
    channel_active: dict[str, int] = defaultdict(int)
    with connection.cursor() as cursor:
        cursor.execute(
            _PERIOD_STORE_SUMS_SQL.format(purchases=P), [start, program.pk, sums_from, end]
        )
        sums = cursor.fetchall()
        cursor.execute(
            members_sql,
            [start, start, *mask_params, program.pk, previous_start, end],
        )
        for n_cur, n_prev, both, two_or_more, *bits in cursor.fetchall():
            active += int(n_cur or 0)
            previous_active += int(n_prev or 0)
            retained += int(both or 0)
            repeaters += int(two_or_more or 0)
            count_masked(store_active, channel_active, masks, bits, channel_of, int(n_cur or 0))
    current: list[dict] = []
    previous: list[dict] = []
    for store_id, cur, member_n, member_rev, anon_n, anon_rev in sums:
        (current if cur else previous).append(
            {
                "store_id": store_id,
                "member_purchases": int(member_n or 0),
                "member_revenue": _decimal(member_rev),
                "anon_purchases": int(anon_n or 0),
                "anon_revenue": _decimal(anon_rev),
                "active": store_active.get(store_id, 0),
            }
        )
    stores = sorted(current, key=lambda row: row["store_id"])
    return PeriodSales(
        totals=_add_totals(stores, active),
        by_store=stores,
        by_channel=channel_rows(stores, channel_of, channel_active),
        previous_active=previous_active,
        previous_revenue=_add_totals(previous, 0)["member_revenue"]
        if previous_revenue is None
        else previous_revenue,
        retained=retained,
        repeaters=repeaters,
    )


def _sales_figures(totals: dict, dimension: str, key: str = "", store_id=None) -> list[Figure]:
    """The figures that make sense per store and channel as well as for the whole program."""
    member_rev, anon_rev = money(totals["member_revenue"]), money(totals["anon_revenue"])
    member_n, anon_n = totals["member_purchases"], totals["anon_purchases"]
    active = totals["active"]

    def fig(metric, value, num=None, den=None):
        return Figure(metric, value, num, den, dimension=dimension, key=key, store_id=store_id)

    return [
        fig(Metric.ACTIVE_MEMBERS, Decimal(active)),
        fig(Metric.PURCHASES_MEMBER, Decimal(member_n)),
        fig(Metric.PURCHASES_NON_MEMBER, Decimal(anon_n)),
        fig(Metric.REVENUE_TOTAL, member_rev + anon_rev, member_rev, anon_rev),
        fig(Metric.REVENUE_MEMBER, member_rev),
        fig(Metric.REVENUE_NON_MEMBER, anon_rev),
        fig(Metric.AVG_BASKET_MEMBER, divide(member_rev, member_n), member_rev, Decimal(member_n)),
        fig(Metric.AVG_BASKET_NON_MEMBER, divide(anon_rev, anon_n), anon_rev, Decimal(anon_n)),
    ]


# Program cost -----------------------------------------------------------------------------------


def month_index(day: date) -> int:
    return day.year * 12 + day.month - 1


def _monthly_amount(cost: ProgramCost, month: date) -> Decimal:
    """What `cost` weighs in the calendar month starting on `month` (unrounded): a one-off
    cost spread evenly over its amortisation months from the month it starts in; a recurring
    cost in full in every month from the month it starts in to the month it ends in."""
    index, first = month_index(month), month_index(cost.starts_on)
    if cost.kind == ProgramCost.Kind.ONE_OFF:
        if first <= index < first + cost.amortisation_months:
            return cost.cost_amount / cost.amortisation_months
        return Decimal(0)
    last = month_index(cost.ends_on) if cost.ends_on else None
    if first <= index and (last is None or index <= last):
        return cost.cost_amount
    return Decimal(0)


def allocate_cost(costs, period: Period) -> Decimal:
    """The share of `costs` that falls in `period`, unrounded: each month's amount, prorated by
    the days of the month inside the period (whole months for months and quarters)."""
    total = Decimal(0)
    month = period.start.replace(day=1)
    while month < period.end:
        next_month = add_months(month, 1)
        days_in = (min(next_month, period.end) - max(month, period.start)).days
        share = Decimal(days_in) / Decimal((next_month - month).days)
        for cost in costs:
            total += _monthly_amount(cost, month) * share
        month = next_month
    return total


@dataclass
class CostContext:
    program: Program
    period: Period
    start: object
    end: object
    costs: list  # the program's ProgramCost rows, read once per recompute


def one_off_costs(ctx: CostContext) -> Decimal:
    return money(allocate_cost([c for c in ctx.costs if c.kind == "one_off"], ctx.period))


def recurring_costs(ctx: CostContext) -> Decimal:
    return money(allocate_cost([c for c in ctx.costs if c.kind == "recurring"], ctx.period))


def reward_costs(ctx: CostContext) -> Decimal:
    """The cost to the business of the rewards redeemed in the period whose points were not
    given back (a cancelled voucher, or one that expired with a refund, cost nothing)."""
    return money(
        Redemption.objects.filter(
            program=ctx.program,
            issued_at__gte=ctx.start,
            issued_at__lt=ctx.end,
            refund_txn__isnull=True,
        ).aggregate(total=Sum("cost_amount"))["total"]
    )


# The parts of a program's cost, by name. Campaign costs join when campaigns exist: their app
# registers a source with `register_cost_source("campaigns", fn)` and every figure (program
# cost, ROI and their inputs) takes it in.
COST_SOURCES: dict[str, Callable[[CostContext], Decimal]] = {
    "one_off_amortised": one_off_costs,
    "recurring": recurring_costs,
    "rewards": reward_costs,
}


def register_cost_source(
    name: str,
    source: Callable[[CostContext], Decimal],
    grouped: Callable[[Program, str, list], dict] | None = None,
) -> None:
    """Add a part of the program cost (a function of a CostContext returning money), and its
    grouped form for a full recompute (every period of a kind in one query), if it has one."""
    COST_SOURCES[name] = source
    if grouped is not None:
        GROUPED_COST_SOURCES[name] = grouped


# Points -----------------------------------------------------------------------------------------


def points_by_kind(program: Program, start, end) -> dict[str, int]:
    """Sum of ledger points by kind for the rows effective in [start, end) (start may be None:
    since the beginning)."""
    qs = PointsEntry.objects.filter(program=program, effective_at__lt=end)
    if start is not None:
        qs = qs.filter(effective_at__gte=start)
    rows = qs.values("kind").annotate(total=Sum("points")).order_by("kind")
    return {row["kind"]: int(row["total"] or 0) for row in rows}


def issued(by_kind: dict) -> int:
    """Points credited on purchases net of returns, plus bonuses."""
    return by_kind.get("earn", 0) + by_kind.get("bonus", 0) + by_kind.get("return", 0)


def redeemed(by_kind: dict) -> int:
    """Points spent on rewards, net of those given back (cancelled or refunded vouchers)."""
    return -(by_kind.get("redeem", 0) + by_kind.get("refund", 0))


def expired(by_kind: dict) -> int:
    return -by_kind.get("expire", 0)


def _bucket_case(column: str, ends: list) -> tuple[str, list]:
    """SQL giving the index of the first bound in `ends` (increasing, contiguous months) that
    `column` (never NULL) is below, the last index catching everything later, and its
    parameters. The bounds are tried from the newest: most rows are recent (outstanding
    points, members), and a credit of the last month then costs one comparison, not one per
    month of history (about a tenth of the month-end liability's time at a million members)."""
    if not ends:
        return "0", []
    n = len(ends)
    whens = " ".join(f"WHEN {column} >= %s THEN {i + 1}" for i in reversed(range(n)))
    return f"CASE {whens} ELSE 0 END", [dt(end) for end in reversed(ends)]


# The positive balances (available + pending) at the end of a period: what members hold that
# can expire (a member with a negative balance owes points and has nothing to expire).
_BALANCES_SQL = f"""
SELECT member_id, SUM(points) AS b FROM {E}
WHERE program_id = %s AND effective_at < %s
GROUP BY member_id HAVING SUM(points) > 0
"""  # noqa: S608  # nosec B608  # table name from model metadata; values are parameters

# The members of a program whose ledger has a debit (a redemption, an expiry, a return) or a
# release: only their outstanding points depend on the order of their rows. The others hold
# every credit they were given.
_CONSUMERS_SQL = f"""
SELECT DISTINCT member_id FROM {E}
WHERE program_id = %s AND (points < 0 OR kind = 'release')
"""  # noqa: S608  # nosec B608  # table name from model metadata; values are parameters


def outstanding_by_month(program: Program, end, months: list[date]) -> dict[int | None, int]:
    """Outstanding points at `end` by the index in `months` (local first days) of the month
    their clock starts (None: they never expire). After earning: first in, first out, so a
    balance is made of the newest credits (earned, bonus, refunded, added), each dated by when
    it was earned. After inactivity: the whole balance, dated by the last earning or redemption
    (or enrolment)."""
    policy = program.expiry_policy
    params = [program.pk, dt(end)]
    if policy == Program.ExpiryPolicy.NONE:
        sql = f"SELECT NULL, COALESCE(SUM(b), 0) FROM ({_BALANCES_SQL}) bal"  # noqa: S608  # nosec B608  # the query above, from a table name; values are parameters
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return {None: int(cursor.fetchone()[1] or 0)}
    tz = program.tzinfo
    ends = [period_containing(PeriodKind.MONTH, m).bounds(tz)[1] for m in months[:-1]]
    if policy == Program.ExpiryPolicy.AFTER_EARNING:
        # One pass over the member's rows, newest credit first: `newer` is the credits after
        # each one, and a credit keeps what the balance leaves of it after the newer ones.
        case, case_params = _bucket_case("lots.earned", ends)
        newer = """COALESCE(SUM({credits}) OVER (
           PARTITION BY c.member_id
           ORDER BY COALESCE(c.earned_at, c.effective_at) DESC, c.id DESC
           ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
         ), 0)"""
        # The balance at `end` is the sum of the member's rows before it, in the same pass.
        # Only the members with a debit or a release go through it (`_CONSUMERS_SQL`, a tenth
        # of the members of the demo program at a million): the others keep every credit.
        # So the outstanding points are every member's credits, summed without ordering,
        # corrected for those members by what the pass keeps of each of their credits less
        # the credit itself. (Before, the pass ran over every member's credits, with the
        # members' cached balances when nothing took effect after `end`: 10 s of the nightly
        # run on the slower machine.)
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
        # statistics on (ensure_period_statistics, run by every recompute): in parallel,
        # where a sum by bucket ran in one process (2.6 s of 4.7 s at a million members).
        earned_case, earned_params = _bucket_case("c.earned_at", ends)
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
                    bucket = max(0, bisect.bisect_right(months, _day(credited_in)) - 1)
                result[int(bucket)] += int(points or 0)
        return dict(result)
    else:
        case, case_params = _bucket_case("COALESCE(last.at, m.enrolled_at)", ends)
        sql = f"""
WITH bal AS ({_BALANCES_SQL}),
last AS (
  SELECT member_id, MAX(effective_at) AS at FROM {E}
  WHERE program_id = %s AND effective_at < %s AND kind IN ('earn', 'redeem')
  GROUP BY member_id
)
SELECT {case} AS bucket, SUM(bal.b)
FROM bal JOIN {M} m ON m.id = bal.member_id LEFT JOIN last ON last.member_id = bal.member_id
GROUP BY 1
"""  # noqa: S608  # nosec B608  # table names and SQL built in this module; values are parameters
        all_params = [*params, program.pk, dt(end), *case_params]
    with connection.cursor() as cursor:
        cursor.execute(sql, all_params)
        return {int(bucket): int(points or 0) for bucket, points in cursor.fetchall()}


def outstanding_at(program: Program, period: Period, first_day: date) -> dict[date | None, int]:
    """`outstanding_by_month` at the end of `period`, by the local first day of the month the
    points' clock starts (None: they never expire)."""
    months = [p.start for p in periods_between(PeriodKind.MONTH, first_day, period.start)]
    end = period.bounds(program.tzinfo)[1]
    return {
        None if index is None else months[index]: points
        for index, points in outstanding_by_month(program, end, months).items()
    }


def liability_rows(
    program: Program, outstanding: dict[date | None, int], breakage_rate: Decimal | None
) -> list[LiabilityRow]:
    """Outstanding points (by the month their clock starts, None: they never expire) by expiry
    month, in money, with the expected breakage: points x the program's breakage to date
    (expired / issued since the start)."""
    rows = []
    cost = program.point_cost_amount
    for month, points in sorted(outstanding.items(), key=lambda kv: (kv[0] is None, kv[0])):
        if not points:
            continue
        if month is None:
            expiry, expected = None, 0
        else:
            expiry = add_months(month, program.expiry_months)
            rate = breakage_rate or Decimal(0)
            expected = int((points * rate).quantize(Decimal(1), ROUND_HALF_UP))
        rows.append(
            LiabilityRow(expiry, points, money(points * cost), expected, money(expected * cost))
        )
    return rows


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
# (`_CONSUMERS_SQL`, a tenth of the members of the demo program at a million): at their month
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


def _consumer_changes(program: Program, months: list[Period]) -> list[tuple]:
    """The changes of what each month of credits keeps, as (month of the change, month of
    credits, points) rows, for the members with a debit or a release only: at their month of
    credits, what it keeps less the credits; later, the months where K moves across it. With
    every member's credits by month (`_ledger_sums`) they make the outstanding points at
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
    # needs (`entry_member_history_kpi`, index-only: index scans on), member by member, where
    # bitmap scans of the table took twice as long (2.2 s at a million members).
    with _index_scans(), connection.cursor() as cursor:
        cursor.execute(sql, [program.pk, *month_params, program.pk, end])
        return [(_day(changed), _day(credited), int(n or 0)) for changed, credited, n in cursor]


def outstanding_from_changes(
    months: list[Period], changes: list[tuple], credits: Mapping[date, int]
) -> dict[date, dict[date | None, int]]:
    """The outstanding points at the end of every month of `months`, by month start and month
    of credits, from the consumers' changes (`_consumer_changes`) and every member's credits
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
    """`outstanding_by_month` at the end of every month of `months` (in order), by month start,
    in one query: the members' ledger sums by month with running sums (balance, credits, last
    earning or redemption) give each member's state at each month's end; after earning, first
    in, first out, as the changes of what each month of credits keeps
    (`_BY_EARNING_CHANGES_SQL`, with every member's credits by month from `_ledger_sums`).
    None when the ledger has credits dated apart from when they took effect (`earned_at` is
    only set on releases, which are not credits), where the months of credits would not
    follow the order that the per-period query uses: then each month is read by itself."""
    policy = program.expiry_policy
    if policy == Program.ExpiryPolicy.AFTER_EARNING:
        end = months[-1].bounds(program.tzinfo)[1]
        sums = _ledger_sums(program, PeriodKind.MONTH, end, credits=True)
        if sums.misdated:
            return None
        return outstanding_from_changes(months, _consumer_changes(program, months), sums.credits)
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
            key = None if start is None else _day(start)
            result[months[int(i)].start][key] = int(points or 0)
    if policy == Program.ExpiryPolicy.NONE:
        for by_month in result.values():
            by_month.setdefault(None, 0)
    return result


# Tiers and cohorts ------------------------------------------------------------------------------


def enrolled_by_tier(program: Program, start, end) -> dict[str, tuple[int, int]]:
    """The members enrolled before `end` by the tier they hold now (key: tier id, '' for no
    tier): how many, and how many of them enrolled from `start` on. One read of the members
    gives the period's members, its new members and the tiers now."""
    rows = (
        Member.objects.filter(program=program, enrolled_at__lt=end)
        .values("tier_id")
        .annotate(n=Count("pk"), new=Count("pk", filter=Q(enrolled_at__gte=start)))
        .order_by("tier_id")
    )
    return {_tier_key(row["tier_id"]): (row["n"], row["new"]) for row in rows}


def _tier_key(tier_id) -> str:
    return "" if tier_id is None else str(tier_id)


def members_per_tier(program: Program, end, now: dict[str, int]) -> dict[str, int]:
    """Members enrolled before `end` by the tier they held at `end` (key: tier id, '' for no
    tier), from `now`, the same members by the tier they hold now. A member's tier now is the
    one their last change moved them to, so their tier at `end` is their tier now, unless they
    changed since: then it is the tier their first change at or after `end` moved them from.
    One grouped query: the members who changed since by (tier now, tier then)."""
    counts = dict(now)
    later = TierChange.objects.filter(member=OuterRef("member"), created_at__gte=end)
    earlier_in_later = later.filter(
        Q(created_at__lt=OuterRef("created_at"))
        | Q(created_at=OuterRef("created_at"), pk__lt=OuterRef("pk"))
    )
    first_changes = (
        TierChange.objects.filter(program=program, created_at__gte=end, member__enrolled_at__lt=end)
        .exclude(Exists(earlier_in_later))
        .values("member__tier_id", "from_tier_id")
        .annotate(n=Count("pk"))
        .order_by("member__tier_id", "from_tier_id")
    )
    for row in first_changes:
        now_key, then_key = _tier_key(row["member__tier_id"]), _tier_key(row["from_tier_id"])
        counts[now_key] = counts.get(now_key, 0) - row["n"]
        counts[then_key] = counts.get(then_key, 0) + row["n"]
    return {k: n for k, n in sorted(counts.items()) if n}


def cohort_cells(program: Program, period: Period, months: list[date]) -> list[CohortCell]:
    """For a month P, the cells (M, P - M) of every enrolment month M in `months` up to P:
    members enrolled in M, and how many of them bought in P."""
    tz = program.tzinfo
    start, end = period.bounds(tz)
    months = [m for m in months if m <= period.start]
    ends = [period_containing(PeriodKind.MONTH, m).bounds(tz)[1] for m in months]
    case, case_params = _bucket_case("m.enrolled_at", ends[:-1])
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {case}, COUNT(*) FROM {M} m WHERE m.program_id = %s AND m.enrolled_at < %s "  # noqa: S608  # nosec B608  # table names and SQL built in this module; values are parameters
            "GROUP BY 1",
            [*case_params, program.pk, dt(end)],
        )
        sizes = dict(cursor.fetchall())
        cursor.execute(
            f"SELECT {case}, COUNT(DISTINCT p.member_id) FROM {P} p "  # noqa: S608  # nosec B608  # table names and SQL built in this module; values are parameters
            f"JOIN {M} m ON m.id = p.member_id "
            "WHERE p.program_id = %s AND p.occurred_at >= %s AND p.occurred_at < %s "
            "AND p.total_amount > p.returned_amount AND m.enrolled_at < %s "
            "GROUP BY 1",
            [*case_params, program.pk, dt(start), dt(end), dt(end)],
        )
        active = dict(cursor.fetchall())
    cells = []
    for index, month in enumerate(months):
        size = int(sizes.get(index, 0))
        if not size:
            continue
        n = int(active.get(index, 0))
        after = month_index(period.start) - month_index(month)
        cells.append(CohortCell(month, after, size, n, divide(n, size, HUNDRED)))
    return cells


# One period -------------------------------------------------------------------------------------


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


@dataclass
class PeriodFacts:
    """What the figures of one period are made of, as the database returns it: the same
    whether the period is read alone (`period_facts`) or with every other period of its kind
    in grouped queries (`grouped_facts`). `assemble` turns them into figures."""

    totals: dict  # the program's purchases, keyed as _ZERO_TOTALS
    by_store: list[dict]  # the same per store_id, by store id
    by_channel: list[dict]  # the same per store__channel, by channel
    members_total: int
    new_members: int
    previous_active: int
    previous_revenue: Decimal  # member revenue of P-1
    year_ago_revenue: Decimal  # member revenue of the period a year before
    retained: int
    repeaters: int
    by_kind: dict[str, int]  # ledger sums by kind in the period
    points_before: dict[str, int]  # ledger sums by kind before the period
    cost_parts: dict[str, Decimal]  # by cost source
    tiers: dict[str, int]  # members per tier key at the end
    cohorts: list[CohortCell]  # month periods only
    # Outstanding points at the end by the month their clock starts (month periods only).
    outstanding: dict[date | None, int] | None = None


# Settings for the reads of a recompute on PostgreSQL, local to their transaction. The grouped
# queries' estimated costs (millions of rows from member x period expansions) make PostgreSQL
# JIT-compile them, about a second per query whatever the data size (docs/kpis.md, plans read).
READ_SETTINGS = {"jit": "off"}
# The grouped reads of every period of a kind read the program's whole history: a sequential
# scan then sort is the right plan, where the planner prefers walking an index in member order
# for the window queries (about a third slower at 100,000 members: docs/kpis.md, plans read).
GROUPED_READ_SETTINGS = {**READ_SETTINGS, "enable_indexscan": "off"}
# The reads of one period (`period_facts`) also get `settings.KPI_WORK_MEM` for their sorts and
# hashes: 64 MB took about a tenth off the nightly run's periods at a million members.


@contextmanager
def analytics_reads(read_settings: dict[str, str] = READ_SETTINGS):
    """A transaction for the reads of one recompute step, with `read_settings` on PostgreSQL."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                for name, value in read_settings.items():
                    cursor.execute("SELECT set_config(%s, %s, true)", [name, value])
        yield


def period_facts(
    program: Program,
    period: Period,
    *,
    first_day: date,
    costs: list,
    points_before: dict[str, int] | None = None,
    known_revenue: Mapping[Period, Decimal] | None = None,
) -> PeriodFacts:
    """The facts of one period, read with queries bounded by the period (and P-1 and a year
    before): what an incremental run uses for the few periods that changed. `known_revenue`:
    the member revenue of periods that need not be read again (P-1, a year before)."""
    with analytics_reads({**READ_SETTINGS, "work_mem": settings.KPI_WORK_MEM}):
        return _period_facts(
            program,
            period,
            first_day=first_day,
            costs=costs,
            points_before=points_before,
            known_revenue=known_revenue or {},
        )


def _period_facts(
    program, period, *, first_day, costs, points_before, known_revenue
) -> PeriodFacts:
    tz = program.tzinfo
    start, end = period.bounds(tz)
    enrolled = enrolled_by_tier(program, start, end)
    sales = period_sales(program, period, previous_revenue=known_revenue.get(period.shift(-1)))
    year_ago_revenue = known_revenue.get(period.year_before())
    if year_ago_revenue is None:
        year_ago_revenue = (
            counted_purchases(program, *period.year_before().bounds(tz))
            .filter(member__isnull=False)
            .aggregate(total=Sum(NET_AMOUNT))["total"]
        )
    if points_before is None:
        points_before = points_by_kind(program, None, start)
    cost_ctx = CostContext(program, period, start, end, costs)
    months = [p.start for p in periods_between(PeriodKind.MONTH, first_day, period.start)]
    return PeriodFacts(
        totals=sales.totals,
        by_store=sales.by_store,
        by_channel=sales.by_channel,
        members_total=sum(n for n, _new in enrolled.values()),
        new_members=sum(new for _n, new in enrolled.values()),
        previous_active=sales.previous_active,
        previous_revenue=money(sales.previous_revenue),
        year_ago_revenue=money(year_ago_revenue),
        retained=sales.retained,
        repeaters=sales.repeaters,
        by_kind=points_by_kind(program, start, end),
        points_before=points_before,
        cost_parts={name: money(source(cost_ctx)) for name, source in COST_SOURCES.items()},
        tiers=members_per_tier(program, end, {key: n for key, (n, _new) in enrolled.items()}),
        cohorts=cohort_cells(program, period, months) if period.kind == PeriodKind.MONTH else [],
        outstanding=outstanding_at(program, period, first_day)
        if period.kind == PeriodKind.MONTH
        else None,
    )


def compute_period(
    program: Program,
    period: Period,
    *,
    first_day: date,
    costs: list,
    points_before: dict[str, int] | None = None,
    known_revenue: Mapping[Period, Decimal] | None = None,
) -> PeriodResult:
    """Every figure of `period` for `program` (see the module docstring and docs/kpis.md).
    `first_day` is the program's first active local date, `costs` its ProgramCost rows,
    `points_before` the ledger sums by kind before the period when known (the
    `points_to_date` of the period before), `known_revenue` the member revenue of periods
    known not to have changed (P-1, a year before: see `period_facts`)."""
    facts = period_facts(
        program,
        period,
        first_day=first_day,
        costs=costs,
        points_before=points_before,
        known_revenue=known_revenue,
    )
    return assemble(program, period, facts)


def member_revenue(result: PeriodResult) -> Decimal:
    """The program's member revenue in a period's figures (its `REVENUE_MEMBER` figure)."""
    for figure in result.figures:
        if figure.metric == Metric.REVENUE_MEMBER and figure.dimension == Dimension.PROGRAM:
            return figure.value
    raise ValueError(f"no member revenue among the figures of {result.period}")


def assemble(program: Program, period: Period, facts: PeriodFacts) -> PeriodResult:
    """The figures of `period` from its facts, without a query."""
    figures: list[Figure] = []
    add = figures.append

    # Sales, for the program, per store and per channel.
    totals = facts.totals
    figures += _sales_figures(totals, Dimension.PROGRAM)
    for row in facts.by_store:
        store_id = row["store_id"]
        figures += _sales_figures(row, Dimension.STORE, str(store_id), store_id)
    for row in facts.by_channel:
        figures += _sales_figures(row, Dimension.CHANNEL, row["store__channel"])

    member_rev, anon_rev = money(totals["member_revenue"]), money(totals["anon_revenue"])
    member_n, anon_n = totals["member_purchases"], totals["anon_purchases"]
    active = totals["active"]
    total_rev = member_rev + anon_rev

    # Members.
    add(Figure(Metric.MEMBERS_TOTAL, Decimal(facts.members_total)))
    add(Figure(Metric.NEW_MEMBERS, Decimal(facts.new_members)))
    previous_active, retained = facts.previous_active, facts.retained
    retention = divide(retained, previous_active, HUNDRED)
    add(Figure(Metric.RETENTION_RATE, retention, Decimal(retained), Decimal(previous_active)))
    add(
        Figure(
            Metric.ATTRITION_RATE,
            None if retention is None else HUNDRED - retention,
            Decimal(previous_active - retained),
            Decimal(previous_active),
        )
    )
    repeaters = facts.repeaters
    add(
        Figure(
            Metric.REPURCHASE_RATE,
            divide(repeaters, active, HUNDRED),
            Decimal(repeaters),
            Decimal(active),
        )
    )
    add(
        Figure(
            Metric.PURCHASE_FREQUENCY,
            divide(member_n, active),
            Decimal(member_n),
            Decimal(active),
        )
    )

    # Member revenue: evolution, share, spend multiple.
    for metric, before in (
        (Metric.MEMBER_REVENUE_POP, facts.previous_revenue),
        (Metric.MEMBER_REVENUE_YOY, facts.year_ago_revenue),
    ):
        change = None if not before else divide(member_rev - before, before, HUNDRED)
        add(Figure(metric, change, member_rev, before))
    add(
        Figure(
            Metric.MEMBER_REVENUE_SHARE,
            divide(member_rev, total_rev, HUNDRED),
            member_rev,
            total_rev,
        )
    )
    spend_per_member = divide(member_rev, active)
    add(Figure(Metric.SPEND_PER_MEMBER, spend_per_member, member_rev, Decimal(active)))
    sales_inputs = {
        "member_revenue": exact(member_rev),
        "active_members": active,
        "non_member_revenue": exact(anon_rev),
        "non_member_purchases": anon_n,
    }
    multiple = None
    if active and anon_n and anon_rev:
        multiple = ((member_rev / active) / (anon_rev / anon_n)).quantize(CENT, ROUND_HALF_UP)
    add(
        Figure(
            Metric.SPEND_MULTIPLE,
            multiple,
            (member_rev / active).quantize(Decimal("0.0001"), ROUND_HALF_UP) if active else None,
            (anon_rev / anon_n).quantize(Decimal("0.0001"), ROUND_HALF_UP) if anon_n else None,
            sales_inputs,
        )
    )

    # Points.
    by_kind = facts.by_kind
    n_issued, n_redeemed, n_expired = issued(by_kind), redeemed(by_kind), expired(by_kind)
    add(Figure(Metric.POINTS_ISSUED, Decimal(n_issued), inputs={"by_kind": by_kind}))
    add(Figure(Metric.POINTS_REDEEMED, Decimal(n_redeemed)))
    add(Figure(Metric.POINTS_EXPIRED, Decimal(n_expired)))
    add(Figure(Metric.POINTS_ADJUSTED, Decimal(by_kind.get("adjust", 0))))
    add(
        Figure(
            Metric.REDEMPTION_RATE,
            divide(n_redeemed, n_issued, HUNDRED) if n_issued > 0 else None,
            Decimal(n_redeemed),
            Decimal(n_issued),
        )
    )
    add(
        Figure(
            Metric.BREAKAGE_RATE,
            divide(n_expired, n_issued, HUNDRED) if n_issued > 0 else None,
            Decimal(n_expired),
            Decimal(n_issued),
        )
    )

    # Liability at the end of the period: the sums since the beginning.
    points_before = facts.points_before
    to_date = {
        kind: points_before.get(kind, 0) + by_kind.get(kind, 0)
        for kind in sorted(set(points_before) | set(by_kind))
    }
    issued_to_date, expired_to_date = issued(to_date), expired(to_date)
    breakage_history = (
        Decimal(expired_to_date) / Decimal(issued_to_date) if issued_to_date > 0 else None
    )
    outstanding = sum(to_date.values())
    expected = 0
    if program.expiry_policy != Program.ExpiryPolicy.NONE and breakage_history is not None:
        expected = int((max(outstanding, 0) * breakage_history).quantize(Decimal(1), ROUND_HALF_UP))
    liability = []
    if facts.outstanding is not None:
        liability = liability_rows(program, facts.outstanding, breakage_history)
    liability_inputs = {
        "point_cost_amount": exact(program.point_cost_amount),
        "outstanding_points": outstanding,
        "points_issued_to_date": issued_to_date,
        "points_expired_to_date": expired_to_date,
        "expected_breakage_points": expected,
        "expected_breakage_amount": exact(money(expected * program.point_cost_amount)),
    }
    add(Figure(Metric.LIABILITY_POINTS, Decimal(outstanding)))
    add(
        Figure(
            Metric.LIABILITY_AMOUNT,
            money(outstanding * program.point_cost_amount),
            Decimal(outstanding),
            program.point_cost_amount,
            liability_inputs,
        )
    )

    # Costs and ROI.
    parts = facts.cost_parts
    program_cost = sum(parts.values(), Decimal(0))
    add(Figure(Metric.REWARD_COST, parts["rewards"]))
    add(Figure(Metric.PROGRAM_COST, program_cost, inputs={k: exact(v) for k, v in parts.items()}))
    figures += _roi_figures(program, sales_inputs, member_rev, active, anon_rev, anon_n, parts)

    # Members per tier at the end of the period.
    for key, n in facts.tiers.items():
        add(Figure(Metric.TIER_MEMBERS, Decimal(n), dimension=Dimension.TIER, key=key))

    return PeriodResult(period, figures, liability, facts.cohorts, to_date)


# Every period of a kind at once -----------------------------------------------------------------


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


# Turning a timestamp into local time costs PostgreSQL about 0.3 microseconds (the zone's rules
# are looked up for each row): 3 CPU-seconds of a month's member activity at a million members.
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


def _period_annotation(model, column: str, kind: str, program: Program, span=None) -> RawSQL:
    qn = connection.ops.quote_name
    sql, params = period_sql(f"{qn(model._meta.db_table)}.{qn(column)}", kind, program, span)
    # The SQL is built from model metadata and the ops of the connection; values are params.
    return RawSQL(sql, params, output_field=DateField())  # noqa: S611  # nosec B611  # SQL from model metadata and connection ops; values are parameters


def _day(value) -> date:
    """A period start read by hand-written SQL: a date (PostgreSQL) or 'YYYY-MM-DD' (SQLite)."""
    if isinstance(value, str):
        return date.fromisoformat(value[:10])
    if isinstance(value, datetime):
        return value.date()
    return value


def grouped_reward_costs(program: Program, kind: str, periods: list[Period]) -> dict[date, Decimal]:
    """`reward_costs` of every period in `periods`, by period start: one grouped query."""
    span = span_bounds(periods[0], periods[-1], program.tzinfo)
    rows = (
        Redemption.objects.filter(
            program=program,
            issued_at__gte=span[0],
            issued_at__lt=span[1],
            refund_txn__isnull=True,
        )
        .annotate(period=_period_annotation(Redemption, "issued_at", kind, program, span))
        .values("period")
        .annotate(total=Sum("cost_amount"))
        .order_by()
    )
    return {row["period"]: row["total"] for row in rows}


# The purchases' side is read only for the purchases with points taken back by a return: a
# bonus on a purchase never returned counts whole. (Joining every award to its purchase hashed
# the program's nine million purchases for 1.8 s at a million members.)
_CAMPAIGN_COSTS_SQL = """
SELECT {period} AS period,
       SUM(a.points) FILTER (WHERE a.purchase_id IS NOT NULL)
         - COALESCE(SUM(a.points * r.points_reversed / r.points_earned), 0),
       SUM(a.points) FILTER (WHERE a.purchase_id IS NULL)
FROM {awards} a
LEFT JOIN (
  SELECT id, points_reversed, points_earned FROM {purchases}
  WHERE program_id = %s AND points_reversed > 0
) r ON r.id = a.purchase_id
WHERE a.program_id = %s AND a.occurred_at >= %s AND a.occurred_at < %s AND a.points > 0
GROUP BY 1
"""


def grouped_campaign_costs(
    program: Program, kind: str, periods: list[Period]
) -> dict[date, Decimal]:
    """`members.campaigns.campaign_costs` of every period in `periods`, by period start: the
    campaign points given (purchase bonuses net of the returned share of their purchase, plus
    lifecycle bonuses) x the cost of one point, in one grouped query."""
    span = span_bounds(periods[0], periods[-1], program.tzinfo)
    period, period_params = period_sql("a.occurred_at", kind, program, span)
    sql = _CAMPAIGN_COSTS_SQL.format(
        period=period, awards=CampaignAward._meta.db_table, purchases=P
    )
    params = [*period_params, program.pk, program.pk, dt(span[0]), dt(span[1])]
    # The returned purchases come from their partial index (index-only: index scans on).
    with _index_scans(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return {
        _day(start): (
            Decimal(int(on_purchases or 0) + int(lifecycle or 0)) * program.point_cost_amount
        ).quantize(Decimal("0.01"))
        for start, on_purchases, lifecycle in rows
    }


# Cost sources that can also compute every period of a kind in one query: the grouped form,
# (program, kind, periods) -> {period start: amount}. A source without one is called per period.
GROUPED_COST_SOURCES: dict[str, Callable[[Program, str, list[Period]], dict]] = {
    "rewards": grouped_reward_costs,
}

_ZERO_TOTALS = {
    "member_purchases": 0,
    "member_revenue": None,
    "anon_purchases": 0,
    "anon_revenue": None,
    "active": 0,
}


def _add_totals(rows: list[dict], active: int) -> dict:
    """The program's purchase totals from its per-store rows (every counted purchase has a
    store), with the active members counted apart (a member active in two stores is one)."""
    totals = dict(_ZERO_TOTALS, active=active)
    for row in rows:
        for key in ("member_purchases", "anon_purchases"):
            totals[key] += row[key]
        for key in ("member_revenue", "anon_revenue"):
            if row[key] is not None:
                totals[key] = row[key] + (totals[key] or 0)
    return totals


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


def _member_activity(program: Program, kind: str, lo, hi, masks: list[list[int]]) -> list[tuple]:
    """Set-based member activity over [lo, hi), from the distinct (member, period) pairs,
    each with the member's previous active period (LAG), the stores they bought in (`masks`:
    `store_masks`) and, for month periods, their enrolment month. Rows of two kinds:
    ('pairs', period, previous active period, enrolment month or None, members, members with
    two purchases or more), so that retention is the pairs whose previous period is P-1 and
    cohorts the pairs by enrolment month; ('stores', period, None, None, members, None,
    mask...), the members of the period who bought in exactly the stores of the masks, so
    that the active members of a store or a channel are sums over the masks that hold it."""
    period, period_params = period_sql("p.occurred_at", kind, program, (lo, hi))
    mask_aggregates, mask_params = _mask_aggregates(masks, "p.store_id")
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
        mask_aggregates="".join(f", {aggregate}" for aggregate in mask_aggregates),
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
        # The purchases come in member order from the member index, which holds what the read
        # needs (`purchase_member_occurred_kpi`, an index-only scan): no sort of the program's
        # purchases (about 4 of 14 CPU-seconds of this read for a month at a million members).
        # The pairs come out of LAG in member order too: merged with the members in id order,
        # where the planner hashed the million members in batches and probed them once per
        # pair (1.5 s more at a million members).
        wanted = {"enable_indexscan": "on"}
        if join:
            wanted["enable_hashjoin"] = "off"
        with _local_settings(cursor, wanted):
            cursor.execute(sql, params)
            return cursor.fetchall()


@contextmanager
def _index_scans():
    """Index scans allowed (on PostgreSQL) for the statements inside, which the grouped reads
    otherwise turn off (`GROUPED_READ_SETTINGS`)."""
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor, _local_settings(cursor, {"enable_indexscan": "on"}):
        yield


@contextmanager
def _hashed_periods():
    """Sums grouped by periods found by their bounds (`period_sql` with a span) hashed, not
    sorted (on PostgreSQL): the planner has no statistics on that expression, takes every
    timestamp for a group of its own and sorts the rows to disk, where a hash table holds the
    few thousand (day, key) groups there are."""
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor, _local_settings(cursor, {"enable_sort": "off"}):
        yield


@contextmanager
def _local_settings(cursor, wanted: dict[str, str]):
    """The settings of `wanted` (name: value) for the statements inside, within the current
    transaction; each back to what it was after them."""
    before = {}
    for name, value in wanted.items():
        cursor.execute("SELECT current_setting(%s)", [name])
        before[name] = cursor.fetchone()[0]
        cursor.execute("SELECT set_config(%s, %s, true)", [name, value])
    try:
        yield
    finally:
        for name, value in before.items():
            cursor.execute("SELECT set_config(%s, %s, true)", [name, value])


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


def _tier_deltas(program: Program, kind: str, since, hi) -> list[tuple]:
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


# The timestamps that reads group by their local month through the time zone (the month-end
# liability's, `period_sql` without a span): without statistics on the period expression,
# PostgreSQL estimates as many groups as distinct timestamps (about one per row), and so never
# sums the rows in parallel workers (partial aggregation) nor in a hash table. Statistics on
# the expression itself (`CREATE STATISTICS ... ON (expression)`, one per table, period kind
# and time zone in use) give it the real number of periods: the ledger's sums by month went
# from 2.8 s to 1.3 s at a million members. (The reads that find their periods by bounds
# cannot have statistics on their expression, whose bounds change every day: they are told to
# hash, `_hashed_periods`.)
PERIOD_STATISTICS = ((PointsEntry, "effective_at"),)
PERIOD_STATISTICS_PREFIX = "analytics_period_"


def _period_statistics_name(model, kind: str, time_zone: str) -> str:
    zone = hashlib.sha256(time_zone.encode()).hexdigest()[:12]
    return f"{PERIOD_STATISTICS_PREFIX}{model._meta.model_name}_{kind}_{zone}"


def _ddl(statement: str) -> bool:
    """Run `statement` in a savepoint; False, with a warning in the log, when the database
    refuses it (another recompute created the same statistics at the same moment, or the
    application's user does not own the table): the recompute goes on without."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement)
    except DatabaseError as error:
        logger.warning("KPI planner statistics: %s failed: %s", statement, error)
        return False
    return True


def ensure_period_statistics(kinds) -> list[str]:
    """Create the statistics on the period expressions of `kinds` for the time zone of every
    program (PostgreSQL; nothing elsewhere), drop the others (of time zones no program uses
    any more, or of expressions no read groups by any more), and ANALYZE the tables that got
    new ones so that the planner reads them at once (autovacuum keeps them current
    afterwards). The names of the statistics created."""
    if connection.vendor != "postgresql":
        return []
    qn = connection.ops.quote_name
    zones = sorted(set(Program.objects.values_list("time_zone", flat=True)))
    wanted = {}
    for model, column in PERIOD_STATISTICS:
        for zone in zones:
            for kind in kinds:
                program = Program(time_zone=zone)
                sql, params = period_sql(qn(column), kind, program)
                wanted[_period_statistics_name(model, kind, zone)] = (model, sql, params)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT stxname FROM pg_statistic_ext WHERE starts_with(stxname, %s)",
            [PERIOD_STATISTICS_PREFIX],
        )
        existing = {row[0] for row in cursor.fetchall()}
    created, analyze = [], set()
    for name, (model, sql, params) in wanted.items():
        if name in existing:
            continue
        # DDL takes no parameters: the kind and the zone (a program's validated zone name)
        # are quoted as literals by the driver.
        expression = connection.ops.compose_sql(sql, params)
        ddl = (
            f"CREATE STATISTICS IF NOT EXISTS {qn(name)} ON ({expression}) "
            f"FROM {qn(model._meta.db_table)}"
        )
        if _ddl(ddl):
            created.append(name)
            analyze.add(model._meta.db_table)
    for name in sorted(existing - set(wanted)):
        _ddl(f"DROP STATISTICS IF EXISTS {qn(name)}")
    for table in sorted(analyze):
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {qn(table)}")
    return created


def grouped_facts(
    program: Program, periods: list[Period], *, first_day: date, costs: list
) -> dict[Period, PeriodFacts]:
    """The facts of `periods` (one kind, in order): `grouped_facts_of_kinds` for one kind."""
    kind = periods[0].kind
    return grouped_facts_of_kinds(program, {kind: periods}, first_day=first_day, costs=costs)[kind]


# The grouped reads' CPU-seconds, read alone at a million members (docs/kpis.md, "Periods found
# by their bounds"): the order in which they start. Not listed: under a second.
READ_WEIGHTS: dict[object, float] = {
    ("activity", PeriodKind.MONTH): 8,
    ("activity", PeriodKind.WEEK): 7,
    "stores": 5.5,
    ("activity", PeriodKind.QUARTER): 4.5,
    "outstanding": 3.3,
    "ledger": 2.2,
}


def grouped_facts_of_kinds(
    program: Program, plans: Mapping[str, list[Period]], *, first_day: date, costs: list
) -> dict[str, dict[Period, PeriodFacts]]:
    """The facts of the periods of each kind of `plans` (kind: its periods, in order), by
    kind, from one grouped query per family, each over the whole range the periods need
    (from a year before the first) and grouped by the local period start computed in SQL:
    sales by store, by channel, member activity (active, repeat buyers, retention, cohorts),
    enrolments, ledger sums by kind, members per tier, and each cost source with a grouped
    form. Python then only adds up the few rows per period.

    With several kinds, the reads whose rows add up (sales per store, ledger sums, members
    per tier, enrolments) group by local day once, and each kind adds up the days of its
    periods (`_roll_up`): one scan each instead of one per kind. The member activity (distinct
    members, previous active period) and the costs (rounded per period) are read per kind.
    The reads are independent of each other: on PostgreSQL they run on
    `settings.KPI_READ_CONNECTIONS` connections at once (`run_reads`)."""
    tz = program.tzinfo
    spans = {kind: (periods[0].year_before(), periods[-1]) for kind, periods in plans.items()}
    bounds = {kind: span_bounds(first, last, tz) for kind, (first, last) in spans.items()}
    unit = next(iter(plans)) if len(plans) == 1 else DAY
    lo, hi = min(b[0] for b in bounds.values()), max(b[1] for b in bounds.values())
    # Where the reads from the beginning find their periods by bounds (`period_sql`).
    since = min(lo, utc_midnight(first_day, tz)) if first_day else lo
    channel_of = dict(Store.objects.filter(program=program).values_list("pk", "channel"))
    masks = store_masks(channel_of)
    months = plans.get(PeriodKind.MONTH)
    # The liability at every month's end; after earning, the consumers' changes here and
    # every member's credits from the ledger sums (`outstanding_from_changes`).
    by_earning = bool(months) and program.expiry_policy == Program.ExpiryPolicy.AFTER_EARNING
    reads: dict[object, Callable[[], object]] = {
        ("activity", kind): partial(_member_activity, program, kind, *bounds[kind], masks)
        for kind in plans
    }
    if by_earning:
        reads["outstanding"] = partial(_consumer_changes, program, months)
    elif months:
        reads["outstanding"] = partial(grouped_outstanding, program, months)
    reads["stores"] = partial(_store_sums, program, unit, lo, hi)
    reads["ledger"] = partial(_ledger_sums, program, unit, hi, credits=by_earning, since=since)
    for kind, periods in plans.items():
        reads[("costs", kind)] = partial(_cost_parts, program, periods, costs)
    reads["tiers"] = partial(_tier_deltas, program, unit, since, hi)
    reads["enrolments"] = partial(_enrolments, program, unit, since, hi)
    # Heaviest first: each connection takes the next read when it is free, and the last ones
    # to start are short.
    order = sorted(reads, key=lambda name: -READ_WEIGHTS.get(name, 0))
    read = run_reads({name: reads[name] for name in order}, GROUPED_READ_SETTINGS)

    result = {}
    for kind, periods in plans.items():
        first, last = spans[kind]
        ledger = read["ledger"]
        kind_read = {
            "activity": read[("activity", kind)],
            "costs": read[("costs", kind)],
            "outstanding": read["outstanding"] if kind == PeriodKind.MONTH else {},
            "stores": read["stores"],
            "ledger": ledger,
            "tiers": read["tiers"],
            "enrolments": read["enrolments"],
        }
        if unit != kind:
            roll = partial(_roll_up, kind, last)
            kind_read["stores"] = _roll_up_stores(kind, first, last, read["stores"])
            kind_read["ledger"] = LedgerSums(
                by_kind=roll(ledger.by_kind),
                credits=roll(ledger.credits) if kind == PeriodKind.MONTH else {},
                misdated=ledger.misdated,
            )
            kind_read["tiers"] = [
                (period.start, tier_id, delta)
                for day, tier_id, delta in read["tiers"]
                if (period := _within(kind, _day(day), last))
            ]
            kind_read["enrolments"] = roll(read["enrolments"])
        result[kind] = _grouped_result(program, periods, first_day, kind_read, masks, channel_of)
    return result


def _within(kind: str, day: date, last: Period, first: Period | None = None):
    """The `kind` period of `day` when it lies from `first` (or from the beginning) to
    `last`, else None."""
    period = period_containing(kind, day)
    if period > last or (first is not None and period < first):
        return None
    return period


def _roll_up(kind: str, last: Period, by_day: Mapping) -> dict:
    """Day rows (day: an int, or a dict of ints by key) added up by `kind` period, for the
    periods from the beginning to `last` (what running sums to date need)."""
    result: dict = {}
    for day, value in by_day.items():
        period = _within(kind, _day(day), last)
        if period is None:
            continue
        if isinstance(value, dict):
            sums = result.setdefault(period.start, {})
            for key, n in value.items():
                sums[key] = sums.get(key, 0) + n
        else:
            result[period.start] = result.get(period.start, 0) + value
    return {start: result[start] for start in sorted(result)}


def _roll_up_stores(kind: str, first: Period, last: Period, by_day: Mapping) -> dict:
    """The stores' purchase sums by day (`_store_sums`) added up by `kind` period from `first`
    to `last`, each period's rows by store id as the query gives them."""
    sums: dict[date, dict[int, dict]] = defaultdict(dict)
    for day, rows in by_day.items():
        period = _within(kind, _day(day), last, first)
        if period is None:
            continue
        stores = sums[period.start]
        for row in rows:
            total = stores.get(row["store_id"])
            if total is None:
                stores[row["store_id"]] = dict(row)
                continue
            for key in ("member_purchases", "anon_purchases"):
                total[key] += row[key]
            for key in ("member_revenue", "anon_revenue"):
                if row[key] is not None:
                    total[key] = row[key] + (total[key] or 0)
    return {start: [stores[k] for k in sorted(stores)] for start, stores in sorted(sums.items())}


def run_reads(reads: Mapping[object, Callable], read_settings: dict[str, str]) -> dict:
    """The result of each read of `reads` (by name), each in a transaction with
    `read_settings` (`analytics_reads`). On PostgreSQL, outside a transaction, they run on
    `settings.KPI_READ_CONNECTIONS` connections at once, a thread each, in the order given:
    PostgreSQL runs most of each grouped read in one process, so that two connections keep
    two cores busy. Each read is one statement under READ COMMITTED, as they are on one
    connection. Inside a transaction (a test's, say), another connection would not see its
    rows: the reads then run one after the other on this connection, as on SQLite."""
    workers = min(settings.KPI_READ_CONNECTIONS, len(reads))
    if workers < 2 or connection.vendor != "postgresql" or connection.in_atomic_block:
        with analytics_reads(read_settings):
            return {name: read() for name, read in reads.items()}

    def run(read):
        try:
            with analytics_reads(read_settings):
                return read()
        finally:
            connection.close()  # the thread's own connection

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kpi-read") as pool:
        futures = {name: pool.submit(run, read) for name, read in reads.items()}
        return {name: future.result() for name, future in futures.items()}


def _store_sums(program: Program, kind: str, lo, hi) -> dict[date, list[dict]]:
    """The purchase sums of each store by period over [lo, hi), by period start. Their
    active members come from the member activity (a distinct count here sorted every
    purchase again, in one process: 6 s of a month's full recompute at a million members)."""
    counted = counted_purchases(program, lo, hi).annotate(
        period=_period_annotation(Purchase, "occurred_at", kind, program, (lo, hi))
    )
    by_store: dict[date, list[dict]] = defaultdict(list)
    rows = counted.values("period", "store_id").annotate(**_PURCHASE_SUMS).order_by()
    # An index-only scan of a covering index reads a sixth of the table's pages.
    with _index_scans(), _hashed_periods():
        rows = list(rows)
    for row in sorted(rows, key=lambda row: (_day(row["period"]), row["store_id"])):
        by_store[row.pop("period")].append(row)
    return by_store


def _enrolments(program: Program, kind: str, since, hi) -> dict[date, int]:
    """Enrolments by period before `hi` (and so members at the end of each period, and cohort
    sizes), by period start; `since` as for `_tier_deltas`."""
    return dict(
        Member.objects.filter(program=program, enrolled_at__lt=hi)
        .annotate(period=_period_annotation(Member, "enrolled_at", kind, program, (since, hi)))
        .values("period")
        .annotate(n=Count("pk"))
        .order_by()
        .values_list("period", "n")
    )


@dataclass
class LedgerSums:
    """The ledger's sums by period and kind (`_ledger_sums`), with what the month-end
    liability after earning takes from the same rows: every member's credits by month, and
    whether a credit is dated apart from when it took effect (`earned_at` is only set on
    releases, which are not credits; otherwise the grouped liability does not hold)."""

    by_kind: dict[date, dict[str, int]]
    credits: dict[date, int] = field(default_factory=dict)
    misdated: bool = False


def _ledger_sums(
    program: Program, kind: str, hi, *, credits: bool = False, since=None
) -> LedgerSums:
    """Ledger sums by period and kind, from the beginning to `hi`; with `credits` (month
    periods, expiry after earning), the credits by month too, which spares the liability a
    scan of its own of the ledger (1.8 s at a million members). `since` as for
    `_tier_deltas`: the periods found by their bounds, the sums hashed."""
    aggregates = {"total": Sum("points")}
    if credits:
        credit = Q(points__gt=0) & ~Q(kind=PointsEntry.Kind.RELEASE)
        aggregates["credits"] = Sum("points", filter=credit)
        aggregates["misdated"] = Count(
            "pk",
            filter=~Q(kind=PointsEntry.Kind.RELEASE)
            & (Q(earned_at__lt=F("effective_at")) | Q(earned_at__gt=F("effective_at"))),
        )
    span = None if since is None else (since, hi)
    rows = (
        PointsEntry.objects.filter(program=program, effective_at__lt=hi)
        .annotate(period=_period_annotation(PointsEntry, "effective_at", kind, program, span))
        .values("period", "kind")
        .annotate(**aggregates)
        .order_by()
    )
    with _hashed_periods() if span is not None else nullcontext():
        rows = list(rows)
    sums = LedgerSums(defaultdict(dict))
    for row in sorted(rows, key=lambda row: (_day(row["period"]), row["kind"])):
        sums.by_kind[row["period"]][row["kind"]] = int(row["total"] or 0)
        if credits and row["credits"]:
            sums.credits[row["period"]] = sums.credits.get(row["period"], 0) + row["credits"]
        if credits and row["misdated"]:
            sums.misdated = True
    return sums


def _cost_parts(program: Program, periods: list[Period], costs: list) -> dict:
    """Each cost source's amount for each period of `periods`: one grouped query for a source
    with a grouped form, else the source per period."""
    kind, tz = periods[0].kind, program.tzinfo
    parts: dict[Period, dict[str, Decimal]] = {period: {} for period in periods}
    for name, source in COST_SOURCES.items():
        grouped_source = GROUPED_COST_SOURCES.get(name)
        amounts = grouped_source(program, kind, periods) if grouped_source else None
        for period in periods:
            if amounts is not None:
                parts[period][name] = money(amounts.get(period.start))
            else:
                ctx = CostContext(program, period, *period.bounds(tz), costs)
                parts[period][name] = money(source(ctx))
    return parts


def _grouped_result(program, periods, first_day, read, masks, channel_of):
    """The PeriodFacts of each period from the grouped reads (`read`, by name)."""
    kind = periods[0].kind
    by_store = read["stores"]
    enrolments, ledger_sums, parts = read["enrolments"], read["ledger"], read["costs"]
    ledger = ledger_sums.by_kind

    # Member activity: active, repeat buyers, retained (previous active period is P-1),
    # cohort cells (month periods), active members per store and per channel.
    active: dict[date, int] = defaultdict(int)
    repeaters: dict[date, int] = defaultdict(int)
    pairs: dict[tuple, int] = defaultdict(int)
    cohort_active: dict[tuple, int] = defaultdict(int)
    store_active: dict[date, dict] = defaultdict(lambda: defaultdict(int))
    channel_active: dict[date, dict] = defaultdict(lambda: defaultdict(int))
    for row_kind, start, prev, cohort, n, repeat, *bits in read["activity"]:
        start, n = _day(start), int(n)
        if row_kind == "stores":
            count_masked(store_active[start], channel_active[start], masks, bits, channel_of, n)
            continue
        active[start] += n
        repeaters[start] += int(repeat or 0)
        if prev is not None:
            pairs[(start, _day(prev))] += n
        if cohort is not None and _day(cohort) <= start:
            cohort_active[(_day(cohort), start)] += n
    by_channel: dict[date, list[dict]] = {}
    for start, stores in by_store.items():
        for row in stores:
            row["active"] = store_active[start].get(row["store_id"], 0)
        by_channel[start] = channel_rows(stores, channel_of, channel_active[start])

    tier_deltas: dict[date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for start, tier_id, delta in read["tiers"]:
        tier_deltas[_day(start)]["" if tier_id is None else str(tier_id)] += int(delta)

    # Running sums over every period start up to each period of the plan.
    starts = sorted(set(enrolments) | set(ledger) | set(tier_deltas) | {p.start for p in periods})
    members_to: dict[date, int] = {}
    points_before_of: dict[date, dict[str, int]] = {}
    tiers_to: dict[date, dict[str, int]] = {}
    members_total, points_to, tiers = 0, defaultdict(int), defaultdict(int)
    for start in starts:
        points_before_of[start] = dict(sorted(points_to.items()))
        members_total += enrolments.get(start, 0)
        members_to[start] = members_total
        for key, points in ledger.get(start, {}).items():
            points_to[key] += points
        for key, delta in tier_deltas.get(start, {}).items():
            tiers[key] += delta
        tiers_to[start] = {key: n for key, n in sorted(tiers.items()) if n}

    outstanding: dict[date, dict[date | None, int]] = read["outstanding"]
    if kind == PeriodKind.MONTH:
        if program.expiry_policy == Program.ExpiryPolicy.AFTER_EARNING and not ledger_sums.misdated:
            outstanding = outstanding_from_changes(periods, outstanding, ledger_sums.credits)
        elif program.expiry_policy == Program.ExpiryPolicy.AFTER_EARNING:
            # Without the grouped form (see LedgerSums.misdated): one query per month.
            outstanding = run_reads(
                {p.start: partial(outstanding_at, program, p, first_day) for p in periods},
                GROUPED_READ_SETTINGS,
            )

    result = {}
    for period in periods:
        start, previous = period.start, period.shift(-1).start
        stores = by_store.get(start, [])
        previous_totals = _add_totals(by_store.get(previous, []), active.get(previous, 0))
        cohorts = []
        if kind == PeriodKind.MONTH:
            for month in [p.start for p in periods_between(kind, first_day, start)]:
                size = enrolments.get(month, 0)
                if size:
                    n = cohort_active.get((month, start), 0)
                    after = month_index(start) - month_index(month)
                    cohorts.append(CohortCell(month, after, size, n, divide(n, size, HUNDRED)))
        result[period] = PeriodFacts(
            totals=_add_totals(stores, active.get(start, 0)),
            by_store=stores,
            by_channel=by_channel.get(start, []),
            members_total=members_to[start],
            new_members=enrolments.get(start, 0),
            previous_active=previous_totals["active"],
            previous_revenue=money(previous_totals["member_revenue"]),
            year_ago_revenue=money(
                _add_totals(by_store.get(period.year_before().start, []), 0)["member_revenue"]
            ),
            retained=pairs.get((start, previous), 0),
            repeaters=repeaters.get(start, 0),
            by_kind=dict(sorted(ledger.get(start, {}).items())),
            points_before=points_before_of[start],
            cost_parts=parts[period],
            tiers=tiers_to[start],
            cohorts=cohorts,
            outstanding=outstanding.get(start),
        )
    return result


def compute_periods(
    program: Program, periods: list[Period], *, first_day: date, costs: list
) -> Iterator[PeriodResult]:
    """Every figure of `periods` (one kind, in order) from grouped queries over all of them
    (`grouped_facts`), a handful of scans whatever the number of periods: what a full
    recompute of that kind alone computes (`services.recompute_kinds` reads every kind of a
    run together, `grouped_facts_of_kinds`, and assembles each period the same way). Yields
    one PeriodResult per period, in order."""
    if not periods:
        return
    facts = grouped_facts(program, periods, first_day=first_day, costs=costs)
    for period in periods:
        yield assemble(program, period, facts[period])


def incremental_revenue(member_revenue, active_members, non_member_revenue, non_member_purchases):
    """What members spent above the non-member baseline: member revenue - active members x the
    average non-member basket (an anonymous purchase is one visit of one customer). None
    without a baseline."""
    if not non_member_purchases or not non_member_revenue:
        return None
    baseline = Decimal(non_member_revenue) / Decimal(non_member_purchases)
    return money(Decimal(member_revenue) - Decimal(active_members) * baseline)


def roi(incremental_gross_margin, program_cost) -> Decimal | None:
    """(incremental gross margin - program cost) / program cost x 100."""
    if incremental_gross_margin is None or not program_cost:
        return None
    return divide(incremental_gross_margin - program_cost, program_cost, HUNDRED)


def _roi_figures(program, sales_inputs, member_rev, active, anon_rev, anon_n, parts):
    program_cost = sum(parts.values(), Decimal(0))
    extra = incremental_revenue(member_rev, active, anon_rev, anon_n)
    margin = None if extra is None else money(extra * program.gross_margin_rate)
    baseline = (anon_rev / anon_n).quantize(Decimal("0.0001"), ROUND_HALF_UP) if anon_n else None
    inputs = {
        "method": "member_vs_baseline_spend",
        **sales_inputs,
        "baseline_basket": exact(baseline) if baseline is not None else None,
        "incremental_revenue": None if extra is None else exact(extra),
        "gross_margin_rate": exact(program.gross_margin_rate),
        "incremental_gross_margin": None if margin is None else exact(margin),
        "program_cost": exact(program_cost),
        "costs": {name: exact(amount) for name, amount in parts.items()},
    }
    return [
        Figure(Metric.INCREMENTAL_REVENUE, extra, inputs=sales_inputs),
        Figure(
            Metric.INCREMENTAL_GROSS_MARGIN,
            margin,
            extra,
            program.gross_margin_rate,
        ),
        Figure(
            Metric.ROI,
            roi(margin, program_cost),
            None if margin is None else margin - program_cost,
            program_cost,
            inputs,
        ),
    ]


def shifted_dependants(period: Period) -> list[Period]:
    """The periods whose figures read `period` besides itself: the next one (retention,
    change on the previous period) and the one a year later (change on a year before)."""
    later = [period.shift(1)]
    year_later = period.shift({PeriodKind.MONTH: 12, PeriodKind.QUARTER: 4}.get(period.kind, 52))
    later.append(year_later)
    return later
