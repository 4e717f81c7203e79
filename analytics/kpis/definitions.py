"""The definitions of the KPIs (DOMAIN.md, docs/kpis.md): what each figure is made of and its
formula, in pure Python, without a query. The reads (`reads/`) give each period its facts
(`PeriodFacts`); `assemble` turns them into figures.

What counts:
- A purchase counts in the period it occurred in, for its amount net of what was returned
  (`total_amount - returned_amount`, whenever the return happened); a purchase returned in full
  does not count at all (it is not a purchase, and makes nobody active).
- Member purchases have a member; anonymous purchases (no member) are the non-member baseline.
- Ledger figures are sums by kind of the rows effective in the period.

Rounding: money and percentages to 0.01 (half up), from unrounded inputs.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from loyalty.models import Program, ProgramCost
from members.tiers import add_months

from ..models import Dimension, Metric, PeriodKind
from ..periods import Period

CENT = Decimal("0.01")


HUNDRED = Decimal(100)


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


@dataclass
class PeriodFacts:
    """What the figures of one period are made of, as the grouped reads return it
    (`engine.grouped_facts_of_kinds`): the same whether the period is read alone, with a few
    others or with every other period of its kind. `assemble` turns them into figures."""

    totals: dict  # the program's purchases, keyed as ZERO_TOTALS
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


ZERO_TOTALS = {
    "member_purchases": 0,
    "member_revenue": None,
    "anon_purchases": 0,
    "anon_revenue": None,
    "active": 0,
}


def add_totals(rows: list[dict], active: int) -> dict:
    """The program's purchase totals from its per-store rows (every counted purchase has a
    store), with the active members counted apart (a member active in two stores is one)."""
    totals = dict(ZERO_TOTALS, active=active)
    for row in rows:
        for key in ("member_purchases", "anon_purchases"):
            totals[key] += row[key]
        for key in ("member_revenue", "anon_revenue"):
            if row[key] is not None:
                totals[key] = row[key] + (totals[key] or 0)
    return totals


def channel_rows(store_rows: list[dict], channel_of, channel_active: dict) -> list[dict]:
    """The sales of each channel (`store__channel`, by channel) from its stores' rows, with
    the channel's active members (a member of two of its stores is one)."""
    of_channel = defaultdict(list)
    for row in store_rows:
        of_channel[channel_of[row["store_id"]]].append(row)
    return [
        {"store__channel": channel, **add_totals(rows, channel_active.get(channel, 0))}
        for channel, rows in sorted(of_channel.items())
    ]


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


def issued(by_kind: dict) -> int:
    """Points credited on purchases net of returns, plus bonuses."""
    return by_kind.get("earn", 0) + by_kind.get("bonus", 0) + by_kind.get("return", 0)


def redeemed(by_kind: dict) -> int:
    """Points spent on rewards, net of those given back (cancelled or refunded vouchers)."""
    return -(by_kind.get("redeem", 0) + by_kind.get("refund", 0))


def expired(by_kind: dict) -> int:
    return -by_kind.get("expire", 0)


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
