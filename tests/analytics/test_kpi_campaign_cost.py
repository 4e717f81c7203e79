"""Campaign points are part of the program cost (and so of ROI), at the program's cost of one
point, in the period they were given (DOMAIN.md: program cost = amortised one-off + recurring +
reward costs + campaign costs)."""

from datetime import date
from decimal import Decimal

import pytest

from analytics.models import KpiValue, Metric
from analytics.services import recompute
from loyalty.models import Campaign
from members.services import record_purchase, record_return
from tests.factories import ProgramFactory, StoreFactory, TierFactory, enrol

from .conftest import paris

pytestmark = pytest.mark.django_db


def test_campaign_points_are_costed_in_the_period_they_were_given():
    program = ProgramFactory(
        return_window_days=0, backdating_days=3650, point_cost_amount=Decimal("0.01")
    )
    TierFactory(program=program, rank=0)
    store = StoreFactory(program=program)
    member = enrol(program, email="c@example.fr")
    Campaign.objects.create(
        program=program,
        name="Septembre : 100 points offerts",
        status=Campaign.Status.ACTIVE,
        trigger=Campaign.Trigger.PURCHASE,
        starts_at=paris(9, 1, 0),
        ends_at=paris(10, 1, 0),
        effect=Campaign.Effect.FIXED,
        effect_value=Decimal("100"),
    )
    for receipt, when in (("S1", paris(9, 10)), ("S2", paris(9, 20)), ("O1", paris(10, 5))):
        record_purchase(
            store=store,
            receipt_id=receipt,
            amount=Decimal("20.00"),
            currency="EUR",
            occurred_at=when,
            card_number=member.card_number,
        )
    recompute(program=program, period_kind="month", full=True)

    def cost(month):
        return KpiValue.objects.get(
            program=program,
            period_kind="month",
            period_start=date(2026, month, 1),
            dimension="program",
            dimension_key="",
            metric=Metric.PROGRAM_COST,
        )

    # September: two purchases x 100 bonus points x 0.01 = 2.00; October: none (campaign over).
    assert cost(9).inputs["campaigns"] == "2.00"
    assert cost(9).value == Decimal("2.00")
    assert cost(10).inputs["campaigns"] == "0.00"

    # The grouped form (a full recompute of many periods) gives the same amounts.
    from analytics.kpis.reads.costs import campaign_costs as grouped_campaign_costs
    from analytics.periods import periods_between
    from members.campaigns import campaign_costs

    periods = periods_between("week", date(2026, 8, 1), date(2026, 11, 1))
    grouped = grouped_campaign_costs(program, "week", periods)
    for period in periods:
        start, end = period.bounds(program.tzinfo)
        assert grouped.get(period.start, Decimal("0.00")) == campaign_costs(program, start, end)
    assert sum(grouped.values()) == Decimal("2.00")

    # Half of S2 comes back: half of its bonus is taken back with its points (100 - 100 x
    # 10/20 = 50 points): September costs 1.50, in both forms.
    record_return(
        store=store,
        receipt_id="S2",
        return_id="R2",
        amount=Decimal("10.00"),
        occurred_at=paris(9, 25),
    )
    recompute(program=program, period_kind="month", full=True)
    assert cost(9).inputs["campaigns"] == "1.50"
    grouped = grouped_campaign_costs(program, "week", periods)
    for period in periods:
        start, end = period.bounds(program.tzinfo)
        assert grouped.get(period.start, Decimal("0.00")) == campaign_costs(program, start, end)
    assert sum(grouped.values()) == Decimal("1.50")
