"""Costs: the parts of a program's cost in each period, by source. The sources are the list
`COST_SOURCES`: the program's own costs (one-off, amortised; recurring), allocated to periods
in Python (`definitions.allocate_cost`), and two reads grouped by period, the rewards redeemed
and the campaign points given."""

from datetime import date
from decimal import Decimal

from django.db import connection
from django.db.models import Sum

from loyalty.models import Program, ProgramCost
from loyalty.sql import dt
from members.models import CampaignAward
from rewards.models import Redemption

from ...periods import Period
from ..definitions import allocate_cost, money
from ..postgres import index_scans
from .common import P, day_of, period_annotation, period_spans, period_sql

# The parts of the program cost, in the order their amounts are stored (a figure's `inputs`);
# every figure that takes the program cost (program cost, ROI and their inputs) adds them up.
COST_SOURCES = ("one_off_amortised", "recurring", "rewards", "campaigns")


def reward_costs(program: Program, kind: str, periods: list[Period]) -> dict[date, Decimal]:
    """The cost to the business of the rewards redeemed in each period of `periods` whose
    points were not given back (a cancelled voucher, or one that expired with a refund, cost
    nothing), by period start: one grouped query per span of `periods`."""
    rows = []
    for lo, hi in period_spans(periods, program.tzinfo):
        rows += (
            Redemption.objects.filter(
                program=program, issued_at__gte=lo, issued_at__lt=hi, refund_txn__isnull=True
            )
            .annotate(period=period_annotation(Redemption, "issued_at", kind, program, (lo, hi)))
            .values("period")
            .annotate(total=Sum("cost_amount"))
            .order_by()
        )
    return {day_of(row["period"]): row["total"] for row in rows}


# The purchases' side is read only for the purchases with points taken back by a return: a
# bonus on a purchase never returned counts whole. (Joining every award to its purchase would
# hash every purchase of the program.)
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


def campaign_costs(program: Program, kind: str, periods: list[Period]) -> dict[date, Decimal]:
    """`members.campaigns.campaign_costs` of each period of `periods`, by period start: the
    campaign points given (purchase bonuses net of the returned share of their purchase, plus
    lifecycle bonuses) x the cost of one point, in one grouped query per span of `periods`."""
    rows = []
    for lo, hi in period_spans(periods, program.tzinfo):
        period, period_params = period_sql("a.occurred_at", kind, program, (lo, hi))
        sql = _CAMPAIGN_COSTS_SQL.format(
            period=period, awards=CampaignAward._meta.db_table, purchases=P
        )
        params = [*period_params, program.pk, program.pk, dt(lo), dt(hi)]
        # The returned purchases come from their partial index (index-only: index scans on).
        with index_scans(), connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows += cursor.fetchall()
    return {
        day_of(start): (
            Decimal(int(on_purchases or 0) + int(lifecycle or 0)) * program.point_cost_amount
        ).quantize(Decimal("0.01"))
        for start, on_purchases, lifecycle in rows
    }


def cost_parts(
    program: Program, periods: list[Period], costs: list[ProgramCost]
) -> dict[Period, dict[str, Decimal]]:
    """Each cost source's amount in each period of `periods` (one kind), by source name in the
    order of `COST_SOURCES`; `costs` are the program's ProgramCost rows."""
    kind = periods[0].kind
    one_off = [c for c in costs if c.kind == ProgramCost.Kind.ONE_OFF]
    recurring = [c for c in costs if c.kind == ProgramCost.Kind.RECURRING]
    rewards = reward_costs(program, kind, periods)
    campaigns = campaign_costs(program, kind, periods)
    return {
        period: {
            "one_off_amortised": money(allocate_cost(one_off, period)),
            "recurring": money(allocate_cost(recurring, period)),
            "rewards": money(rewards.get(period.start)),
            "campaigns": money(campaigns.get(period.start)),
        }
        for period in periods
    }
