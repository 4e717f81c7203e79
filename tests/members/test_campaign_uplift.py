"""Uplift, results and audience preview of a campaign (members/campaigns/reports.py), on a data set
computed by hand.

Three treated members (T1..T3) and three held-out ones (C1..C3) reached by a campaign giving
10 points per purchase, from 20 to 10 days ago:

    during:  T = 30, 20+30, 20+20+30 -> revenue 30, 50, 70 (mean 50, variance 400)
                 purchases 1, 2, 3 (mean 2, variance 1)
             C = 20, 30, 40 -> revenue mean 30, variance 100; purchases 1, 1, 1 (variance 0)
    revenue difference 20; standard error sqrt(400/3 + 100/3) = 12.9099;
        95% interval 20 -/+ 1.96 x 12.9099 = -5.30 to 45.30
    frequency difference 1; standard error sqrt(1/3 + 0/3) = 0.57735;
        95% interval 1 -/+ 1.13161 = -0.132 to 2.132
    incremental revenue 20 x 3 = 60.00; points 6 x 10 = 60, cost 60 x 0.01 = 0.60;
        ROI (60.00 x 0.35 - 0.60) / 0.60 x 100 = 3400.0 %
    after (the 10 days since the end): T = 10, 0, 0 (mean 3.33, variance 33.33),
        C = 0, 20, 0 (mean 6.67, variance 133.33): difference -3.33,
        standard error sqrt(33.33/3 + 133.33/3) = 7.4536, interval -17.94 to 11.28
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from loyalty import rules
from loyalty.models import Campaign, Store
from members import services
from members.campaigns import audience_preview, campaign_results, uplift
from members.ledger import find_mismatches
from tests.factories import ProgramFactory, StaffUserFactory, StoreFactory, TierFactory, enrol

pytestmark = pytest.mark.django_db


@pytest.fixture
def program(db):
    program = ProgramFactory(
        return_window_days=0,
        backdating_days=400,
        point_cost_amount=Decimal("0.01"),
        gross_margin_rate=Decimal("0.35"),
    )
    TierFactory(program=program, name="Bronze", rank=0)
    return program


@pytest.fixture
def store(program):
    return StoreFactory(program=program)


def buy(store, member, when, amount):
    store = Store.objects.select_related("program").get(pk=store.pk)  # as a request loads it
    services.record_purchase(
        store=store,
        receipt_id=f"R-{member.pk}-{when.timestamp()}",
        amount=Decimal(amount),
        currency="EUR",
        occurred_at=when,
        card_number=member.card_number,
    )


def groups(program, campaign, size=3):
    treated, held = [], []
    i = 0
    while len(treated) < size or len(held) < size:
        member = enrol(program, email=f"u{i}@example.fr")
        i += 1
        group = (
            held if rules.is_held_out(member.pk, campaign.pk, campaign.holdout_percent) else treated
        )
        if len(group) < size:
            group.append(member)
    return treated, held


@pytest.fixture
def measured(program, store):
    now = timezone.now()
    campaign = Campaign.objects.create(
        program=program,
        name="Autumn",
        status=Campaign.Status.ACTIVE,
        starts_at=now - timedelta(days=20),
        ends_at=now - timedelta(days=10),
        effect=Campaign.Effect.FIXED,
        effect_value=Decimal(10),
        holdout_percent=Decimal(50),
    )
    treated, held = groups(program, campaign)
    during = now - timedelta(days=15)
    spend = {
        0: ["30.00"],
        1: ["20.00", "30.00"],
        2: ["20.00", "20.00", "30.00"],
    }
    for k, member in enumerate(treated):
        for j, amount in enumerate(spend[k]):
            buy(store, member, during + timedelta(hours=j), amount)
    for member, amount in zip(held, ["20.00", "30.00", "40.00"], strict=True):
        buy(store, member, during, amount)
    after = now - timedelta(days=5)
    buy(store, treated[0], after, "10.00")
    buy(store, held[1], after, "20.00")
    return campaign, now


def test_uplift_during_the_campaign_with_its_confidence_interval(measured):
    campaign, _now = measured
    u = uplift(campaign, campaign.starts_at, campaign.ends_at)
    assert (u.treated, u.held_out) == (3, 3)
    assert (u.revenue.treated_mean, u.revenue.held_out_mean) == (Decimal("50.00"), Decimal("30.00"))
    assert (u.revenue.difference, u.revenue.low, u.revenue.high) == (
        Decimal("20.00"),
        Decimal("-5.30"),
        Decimal("45.30"),
    )
    assert not u.revenue.is_significant
    assert (u.frequency.difference, u.frequency.low, u.frequency.high) == (
        Decimal("1.000"),
        Decimal("-0.132"),
        Decimal("2.132"),
    )
    assert u.incremental_revenue == Decimal("60.00")


def test_results_give_points_cost_reach_after_and_roi(measured):
    campaign, now = measured
    r = campaign_results(campaign, now=now)
    assert (r.points, r.cost, r.members_reached, r.held_out) == (60, Decimal("0.60"), 3, 3)
    assert r.roi_percent == Decimal("3400.0")
    after = r.after
    assert (after.revenue.treated_mean, after.revenue.held_out_mean) == (
        Decimal("3.33"),
        Decimal("6.67"),
    )
    assert (after.revenue.difference, after.revenue.low, after.revenue.high) == (
        Decimal("-3.33"),
        Decimal("-17.94"),
        Decimal("11.28"),
    )
    assert find_mismatches() == []


def test_without_a_hold_out_group_there_is_no_uplift_measure(program, store):
    campaign = Campaign.objects.create(
        program=program,
        name="Everyone",
        status=Campaign.Status.ACTIVE,
        starts_at=timezone.now() - timedelta(days=2),
        effect=Campaign.Effect.FIXED,
        effect_value=Decimal(10),
    )
    member = enrol(program, email="a@example.fr")
    buy(store, member, timezone.now() - timedelta(days=1), "20.00")
    r = campaign_results(campaign)
    assert (r.points, r.members_reached, r.held_out) == (10, 1, 0)
    assert r.during.revenue is None
    assert r.roi_percent is None


def test_the_audience_preview_counts_eligible_members_and_the_last_comparable_period(
    program, store
):
    now = timezone.now()
    members = [enrol(program, email=f"p{i}@example.fr") for i in range(3)]
    buy(store, members[0], now - timedelta(days=3), "30.00")
    buy(store, members[0], now - timedelta(days=2), "30.00")
    buy(store, members[1], now - timedelta(days=2), "20.00")  # below the minimum basket
    buy(store, members[2], now - timedelta(days=15), "30.00")  # before the comparable period
    campaign = Campaign.objects.create(
        program=program,
        name="Next week",
        status=Campaign.Status.DRAFT,
        starts_at=now + timedelta(days=1),
        ends_at=now + timedelta(days=11),
        effect=Campaign.Effect.FIXED,
        effect_value=Decimal(10),
        min_basket_amount=Decimal("25.00"),
        holdout_percent=Decimal(25),
        budget_points=1000,
    )
    p = audience_preview(campaign, now=now)
    assert p.eligible_members == 3
    assert (p.period_start, p.period_end) == (now - timedelta(days=10), now)
    assert (p.purchases, p.buyers) == (2, 1)
    # Two purchases x 10 points, of which 75% are treated: 15 points, 0.15 EUR.
    assert (p.expected_points, p.expected_cost) == (15, Decimal("0.15"))


def test_the_campaign_page_shows_results_audience_and_budget(client, measured):
    campaign, _now = measured
    client.force_login(StaffUserFactory())
    page = client.get(f"/admin/loyalty/campaign/{campaign.pk}/change/", HTTP_ACCEPT_LANGUAGE="en")
    assert page.status_code == 200
    html = page.content.decode()
    assert "3400.0 %" in html
    assert "50.00 treated against 30.00 held out: +20.00 EUR" in html
    assert "95% confidence interval -5.30 to 45.30" in html
    assert "60.00 EUR = revenue difference per member" in html
    assert "eligible members" in html
