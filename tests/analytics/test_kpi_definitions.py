"""Each KPI of DOMAIN.md on the hand-computed shop of conftest.py. The expected numbers are
worked out from the definitions (docs/kpis.md), not read from the code."""

import uuid
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import transaction
from django.utils import timezone

from analytics import kpis
from analytics.kpis.reads.liability import grouped_outstanding, misdated_outstanding_at
from analytics.models import (
    KpiCohort,
    KpiLiabilityByExpiry,
    KpiTarget,
    KpiValue,
    Metric,
)
from analytics.periods import periods_between
from analytics.services import recompute
from config import nightly
from loyalty.models import Program
from members import ledger
from members.models import PointsEntry
from members.services import record_purchase
from rewards.services import redeem
from tests.factories import (
    ProgramFactory,
    StaffUserFactory,
    StoreFactory,
    make_reward,
    record_member_purchase,
)

from .conftest import PARIS, build_shop, enrol_on, months_through_today, paris

pytestmark = pytest.mark.django_db

SEP, OCT, AUG = date(2026, 9, 1), date(2026, 10, 1), date(2026, 8, 1)


def figure(program, metric, start=SEP, kind="month", dimension="program", key=""):
    return KpiValue.objects.get(
        program=program,
        period_kind=kind,
        period_start=start,
        dimension=dimension,
        dimension_key=key,
        metric=metric,
    )


def value(program, metric, start=SEP, kind="month", dimension="program", key=""):
    return figure(program, metric, start, kind, dimension, key).value


def expiring_program(slug, months):
    """A program whose points expire `months` after they were earned, available at once."""
    return ProgramFactory(
        slug=slug,
        return_window_days=0,
        backdating_days=3650,
        expiry_policy=Program.ExpiryPolicy.AFTER_EARNING,
        expiry_months=months,
    )


@pytest.fixture
def computed(shop):
    recompute(program=shop.program, period_kind="month", full=True)
    return shop


def test_active_members_purchases_revenue_and_baskets_of_september(computed):
    p = computed.program
    # Members: p4 80 + p5 20 (m1), p6 60 + p10 40 - 10 returned (m3): 4 purchases, 190.00.
    # Non-members: p7 30 + p8 10 (p9 was returned in full): 2 purchases, 40.00.
    assert value(p, Metric.ACTIVE_MEMBERS) == 2
    assert value(p, Metric.PURCHASES_MEMBER) == 4
    assert value(p, Metric.PURCHASES_NON_MEMBER) == 2
    assert value(p, Metric.REVENUE_MEMBER) == Decimal("190.00")
    assert value(p, Metric.REVENUE_NON_MEMBER) == Decimal("40.00")
    assert value(p, Metric.REVENUE_TOTAL) == Decimal("230.00")
    basket = figure(p, Metric.AVG_BASKET_MEMBER)
    assert (basket.value, basket.numerator, basket.denominator) == (Decimal("47.50"), 190, 4)
    assert value(p, Metric.AVG_BASKET_NON_MEMBER) == Decimal("20.00")  # 40 / 2
    assert value(p, Metric.PURCHASE_FREQUENCY) == Decimal("2.00")  # 4 purchases / 2 members
    # m1 and m3 both bought twice: 2 / 2.
    assert value(p, Metric.REPURCHASE_RATE) == Decimal("100.00")
    assert value(p, Metric.MEMBER_REVENUE_SHARE) == Decimal("82.61")  # 190 / 230
    assert value(p, Metric.SPEND_PER_MEMBER) == Decimal("95.00")  # 190 / 2
    # (47.50 x 2.00) / 20.00 = 95 / 20.
    assert value(p, Metric.SPEND_MULTIPLE) == Decimal("4.75")


def test_retention_attrition_and_new_members(computed):
    p = computed.program
    # Active in August {m1, m2}, in September {m1, m3}: 1 of 2 kept.
    retention = figure(p, Metric.RETENTION_RATE)
    assert (retention.value, retention.numerator, retention.denominator) == (50, 1, 2)
    assert value(p, Metric.ATTRITION_RATE) == Decimal("50.00")
    assert value(p, Metric.NEW_MEMBERS) == 1  # m3
    assert value(p, Metric.MEMBERS_TOTAL) == 3
    # October: active {m2 (p11), m3 (p12)}; of September's {m1, m3}, m3 stayed.
    assert value(p, Metric.RETENTION_RATE, OCT) == Decimal("50.00")
    assert value(p, Metric.NEW_MEMBERS, OCT) == 1  # m4
    # August: nobody was active in July, so retention is undefined, not 0.
    assert value(p, Metric.RETENTION_RATE, AUG) is None
    assert value(p, Metric.ATTRITION_RATE, AUG) is None


def test_member_revenue_change_on_previous_period_and_on_a_year_before(shop):
    shop.buy("old", shop.m1, shop.store_a, paris(9, 10, year=2025), "95.00")
    recompute(program=shop.program, period_kind="month", full=True)
    p = shop.program
    # August 150.00 (p1 + p2) -> September 190.00: +26.67 %.
    pop = figure(p, Metric.MEMBER_REVENUE_POP)
    assert (pop.value, pop.numerator, pop.denominator) == (Decimal("26.67"), 190, 150)
    # September 2025: 95.00 -> 190.00: +100 %.
    assert value(p, Metric.MEMBER_REVENUE_YOY) == Decimal("100.00")
    # October 2025 had no member revenue: no change to compute.
    assert value(p, Metric.MEMBER_REVENUE_YOY, OCT) is None


def test_sales_per_store_and_per_channel(computed):
    p, a, w = computed.program, computed.store_a, computed.store_w
    # Store A in September: p4 80 (m1), p10 30 (m3), p7 30 (anonymous).
    store_a = {
        Metric.ACTIVE_MEMBERS: 2,
        Metric.PURCHASES_MEMBER: 2,
        Metric.PURCHASES_NON_MEMBER: 1,
        Metric.REVENUE_TOTAL: Decimal("140.00"),
        Metric.REVENUE_MEMBER: Decimal("110.00"),
        Metric.AVG_BASKET_MEMBER: Decimal("55.00"),
        Metric.AVG_BASKET_NON_MEMBER: Decimal("30.00"),
    }
    # Store W (the web channel): p5 20 (m1), p6 60 (m3), p8 10 (anonymous).
    store_w = {
        Metric.ACTIVE_MEMBERS: 2,
        Metric.PURCHASES_MEMBER: 2,
        Metric.PURCHASES_NON_MEMBER: 1,
        Metric.REVENUE_TOTAL: Decimal("90.00"),
        Metric.REVENUE_MEMBER: Decimal("80.00"),
        Metric.AVG_BASKET_MEMBER: Decimal("40.00"),
        Metric.AVG_BASKET_NON_MEMBER: Decimal("10.00"),
    }
    for metric, expected in store_a.items():
        assert value(p, metric, dimension="store", key=str(a.pk)) == expected, metric
        assert value(p, metric, dimension="channel", key="shop") == expected, metric
    for metric, expected in store_w.items():
        assert value(p, metric, dimension="store", key=str(w.pk)) == expected, metric
        assert value(p, metric, dimension="channel", key="web") == expected, metric
    assert figure(p, Metric.REVENUE_TOTAL, dimension="store", key=str(a.pk)).store_id == a.pk


def test_anonymous_purchases_count_only_in_the_non_member_baseline(shop):
    recompute(program=shop.program, period_kind="month", full=True)
    member_figures = {
        m: value(shop.program, m)
        for m in (Metric.ACTIVE_MEMBERS, Metric.PURCHASES_MEMBER, Metric.REVENUE_MEMBER)
    }
    shop.buy("anon-extra", None, shop.store_w, paris(9, 26), "70.00")
    recompute(program=shop.program, period_kind="month", full=True)
    for metric, before in member_figures.items():
        assert value(shop.program, metric) == before
    # The baseline moves: 3 purchases, 110.00: 36.67 a basket.
    assert value(shop.program, Metric.PURCHASES_NON_MEMBER) == 3
    assert value(shop.program, Metric.AVG_BASKET_NON_MEMBER) == Decimal("36.67")
    # 95.00 per member / (110 / 3) = 2.59.
    assert value(shop.program, Metric.SPEND_MULTIPLE) == Decimal("2.59")


def test_returns_reduce_the_revenue_of_the_purchase_period(shop):
    # A return in November of part of a September purchase lowers September's revenue.
    shop.give_back("p6", shop.store_w, "r6", paris(11, 2), "15.00")
    recompute(program=shop.program, period_kind="month", full=True)
    assert value(shop.program, Metric.REVENUE_MEMBER) == Decimal("175.00")  # 190 - 15
    assert value(shop.program, Metric.PURCHASES_MEMBER) == 4
    # Returned in full, a purchase no longer counts, nor makes its buyer active.
    shop.give_back("p5", shop.store_w, "r5", paris(11, 2), "20.00")
    shop.give_back("p4", shop.store_a, "r4", paris(11, 2), "80.00")
    recompute(program=shop.program, period_kind="month", full=True)
    assert value(shop.program, Metric.PURCHASES_MEMBER) == 2  # p6, p10
    assert value(shop.program, Metric.ACTIVE_MEMBERS) == 1  # m3
    assert value(shop.program, Metric.REVENUE_MEMBER) == Decimal("75.00")  # 45 + 30


def test_points_issued_redeemed_expired_and_liability(computed):
    p = computed.program
    # September: earned 80 + 20 + 60 + 40; redeemed 50 + 50, 50 refunded on cancellation.
    assert value(p, Metric.POINTS_ISSUED) == 200
    assert value(p, Metric.POINTS_REDEEMED) == 50
    assert value(p, Metric.POINTS_EXPIRED) == 0
    assert value(p, Metric.REDEMPTION_RATE) == Decimal("25.00")  # 50 / 200
    assert value(p, Metric.BREAKAGE_RATE) == Decimal("0.00")
    # Outstanding at the end of September: 150 (August) + 200 - 50 = 300 points at 0.01.
    assert value(p, Metric.LIABILITY_POINTS) == 300
    liability = figure(p, Metric.LIABILITY_AMOUNT)
    assert liability.value == Decimal("3.00")
    assert (liability.numerator, liability.denominator) == (300, Decimal("0.01"))
    # October: p11 70 + p12 25 earned, 10 taken back by the return of 2 October.
    assert value(p, Metric.POINTS_ISSUED, OCT) == 85
    assert value(p, Metric.LIABILITY_POINTS, OCT) == 385
    # Points never expire here: one liability row with no expiry month.
    rows = KpiLiabilityByExpiry.objects.filter(program=p, period_kind="month", period_start=SEP)
    assert [(r.expiry_month, r.points, r.amount, r.expected_breakage_points) for r in rows] == [
        (None, 300, Decimal("3.00"), 0)
    ]


def test_breakage_and_liability_by_expiry_month_with_expiring_points(db):
    program = expiring_program("expiring", months=1)
    store = StoreFactory(program=program)
    member = enrol_on(program, "x@example.com", paris(8, 1))
    record_member_purchase(store, member, "a", "100.00", paris(8, 10))
    # The night of 11 September: the 100 points earned on 10 August expire.
    nightly.run_job("expire_points", now=paris(9, 11, 2, 30), programs=[program])
    record_member_purchase(store, member, "b", "40.00", paris(9, 15))
    record_member_purchase(store, member, "c", "20.00", paris(9, 16))
    recompute(program=program, period_kind="month", full=True)
    # September: 60 issued, 100 expired: breakage 100 / 60.
    assert value(program, Metric.POINTS_EXPIRED) == 100
    assert value(program, Metric.BREAKAGE_RATE) == Decimal("166.67")
    # End of August: 100 points earned in August, expiring in September; nothing has expired
    # yet in the program's history, so no breakage is expected.
    august = KpiLiabilityByExpiry.objects.get(program=program, period_start=AUG)
    assert (august.expiry_month, august.points, august.expected_breakage_points) == (SEP, 100, 0)
    # End of September: 60 points earned in September expire in October. History: 100 of 160
    # issued points expired, so 60 x 100/160 = 37.5 -> 38 points (0.38) are expected to.
    september = KpiLiabilityByExpiry.objects.get(program=program, period_start=SEP)
    assert (september.expiry_month, september.points, september.amount) == (
        OCT,
        60,
        Decimal("0.60"),
    )
    assert september.expected_breakage_points == 38
    assert september.expected_breakage_amount == Decimal("0.38")
    liability = figure(program, Metric.LIABILITY_AMOUNT)
    assert liability.inputs["expected_breakage_points"] == 38


def saver_and_spender(slug: str):
    """A program whose points expire 12 months after they were earned, with a saver credited
    100 points in August and a spender credited 100 in August and 60 in September."""
    program = expiring_program(slug, months=12)
    store = StoreFactory(program=program)
    saver = enrol_on(program, "saver@example.com", paris(8, 1))
    spender = enrol_on(program, "spender@example.com", paris(8, 1))
    record_member_purchase(store, saver, "s1", "100.00", paris(8, 10))
    record_member_purchase(store, spender, "p1", "100.00", paris(8, 12))
    record_member_purchase(store, spender, "p2", "60.00", paris(9, 12))
    return program, store, saver, spender


def test_liability_first_in_first_out_for_spenders_and_whole_for_savers(db):
    """Members who never spend keep every credit; a member who spends loses the oldest first.
    Read for every month at once (a full recompute) or for one month (a nightly run)."""
    program, store, saver, spender = saver_and_spender("fifo")
    record_member_purchase(store, saver, "s2", "50.00", paris(9, 10))  # 50 in September
    # 130 points spent on 20 October: August's 100 first, then 30 of September's 60.
    reward = make_reward(program, points_cost=130)
    redeem(member=spender, reward=reward, channel="staff", now=paris(10, 20))
    record_member_purchase(store, spender, "p3", "20.00", paris(10, 25))  # 20 in October

    expected = {
        # End of August: both members hold their August credits.
        AUG: {AUG: 200},
        # End of September: nothing spent yet.
        SEP: {AUG: 200, SEP: 110},
        # End of October: the saver's 100 + 50; the spender's 30 of September and 20 of
        # October.
        OCT: {AUG: 100, SEP: 80, OCT: 20},
    }
    first_day = kpis.first_activity_day(program)
    months = periods_between("month", AUG, OCT)
    assert [m.start for m in months] == [AUG, SEP, OCT]
    assert grouped_outstanding(program, months) == expected
    # The recompute's form: the consumers' changes, with every member's credits by month
    # from the ledger sums.
    grouped = kpis.grouped_facts(program, months, first_day=first_day, costs=[])
    assert {m.start: grouped[m].outstanding for m in months} == expected
    for month in months:
        alone = kpis.grouped_facts(program, [month], first_day=first_day, costs=[])
        assert alone[month].outstanding == expected[month.start]
    # Through the recompute: the end of October's points expire a year after they were earned.
    recompute(program=program, period_kind="month", full=True)
    rows = KpiLiabilityByExpiry.objects.filter(program=program, period_start=OCT)
    assert [(r.expiry_month, r.points) for r in rows] == [
        (date(2027, 8, 1), 100),
        (date(2027, 9, 1), 80),
        (date(2027, 10, 1), 20),
    ]


def test_liability_of_credits_dated_apart_from_their_effect_month_by_month(db):
    """A credit whose clock started before it took effect (`earned_at` set on a credit) breaks
    the order the grouped form rests on: the full recompute's reads then take each month
    from the per-month query."""
    program, _store, _saver, spender = saver_and_spender("misdated")
    reward = make_reward(program, points_cost=130)
    redeem(member=spender, reward=reward, channel="staff", now=paris(10, 20))
    # 20 points credited on 25 October whose clock started on 30 August, written through the
    # ledger (which keeps the member's balances with its rows).
    with transaction.atomic():
        ledger.lock_members([spender.pk])
        ledger.post_many(
            program.pk,
            [
                ledger.BulkPosting(
                    member_id=spender.pk,
                    kind=PointsEntry.Kind.BONUS,
                    bucket=PointsEntry.Bucket.AVAILABLE,
                    points=20,
                    txn=uuid.uuid4(),
                    effective_at=paris(10, 25),
                    earned_at=paris(8, 30),
                )
            ],
            now=paris(10, 25),
        )
    assert ledger.find_mismatches() == []
    first_day = kpis.first_activity_day(program)
    months = periods_between("month", AUG, OCT)
    assert grouped_outstanding(program, months) is None
    per_month = {m.start: misdated_outstanding_at(program, m, first_day) for m in months}
    # End of October: the saver's 100 of August; the spender's 130 points spent took the 120
    # of August first (100, and the 20 counted from August), then 10 of September's 60.
    assert per_month[OCT] == {AUG: 100, SEP: 50}
    grouped = kpis.grouped_facts(program, months, first_day=first_day, costs=[])
    assert {m.start: grouped[m].outstanding for m in months} == per_month


def test_program_cost_and_roi_recomputable_from_the_stored_inputs(computed):
    p = computed.program
    # September: hosting 450.00 + launch 1,200 / 12 = 100.00 + one gift 5.00 (the cancelled
    # one costs nothing).
    cost = figure(p, Metric.PROGRAM_COST)
    assert cost.value == Decimal("555.00")
    assert cost.inputs == {
        "one_off_amortised": "100.00",
        "recurring": "450.00",
        "rewards": "5.00",
        "campaigns": "0.00",  # no campaign in this shop: see test_kpi_campaign_cost.py
    }
    assert value(p, Metric.REWARD_COST) == Decimal("5.00")
    # Incremental revenue: 190.00 - 2 members x 20.00 baseline = 150.00; x 35 % = 52.50.
    assert value(p, Metric.INCREMENTAL_REVENUE) == Decimal("150.00")
    assert value(p, Metric.INCREMENTAL_GROSS_MARGIN) == Decimal("52.50")
    # ROI: (52.50 - 555.00) / 555.00 x 100 = -90.54 %.
    roi = figure(p, Metric.ROI)
    assert roi.value == Decimal("-90.54")

    # A finance person recomputes it from what is shown next to it.
    i = roi.inputs
    assert i["method"] == "member_vs_baseline_spend"
    baseline = Decimal(i["non_member_revenue"]) / i["non_member_purchases"]
    extra = Decimal(i["member_revenue"]) - i["active_members"] * baseline
    assert extra.quantize(Decimal("0.01")) == Decimal(i["incremental_revenue"])
    margin = (extra * Decimal(i["gross_margin_rate"])).quantize(Decimal("0.01"))
    assert margin == Decimal(i["incremental_gross_margin"])
    total_cost = sum(Decimal(v) for v in i["costs"].values())
    assert total_cost == Decimal(i["program_cost"])
    assert ((margin - total_cost) / total_cost * 100).quantize(Decimal("0.01")) == roi.value


def test_week_costs_are_prorated_by_day(computed):
    recompute(program=computed.program, period_kind="week", full=True)
    # Week of Monday 28 September: 3 days of September (3/30) and 4 of October (4/31).
    # Hosting: 450 x 3/30 + 450 x 4/31 = 45 + 58.06 = 103.06; launch: 10 + 12.90 = 22.90.
    cost = figure(computed.program, Metric.PROGRAM_COST, date(2026, 9, 28), "week")
    assert cost.inputs["recurring"] == "103.06"
    assert cost.inputs["one_off_amortised"] == "22.90"
    assert cost.value == Decimal("125.96")


def test_periods_are_local_to_the_program_time_zone(computed):
    p = computed.program
    recompute(program=p, period_kind="week", full=True)
    # p11 at 00:30 on 1 October in Paris is 30 September 22:30 UTC: October's.
    assert value(p, Metric.REVENUE_MEMBER, OCT) == Decimal("95.00")  # p11 70 + p12 25
    # The week from Monday 28 September: p10 (30.00 kept) and p11 (70.00); p9 fully returned.
    week = date(2026, 9, 28)
    assert value(p, Metric.REVENUE_MEMBER, week, "week") == Decimal("100.00")
    assert value(p, Metric.ACTIVE_MEMBERS, week, "week") == 2


def test_a_late_evening_purchase_west_of_utc_belongs_to_its_local_month(db):
    program = ProgramFactory(
        slug="ny", time_zone="America/New_York", return_window_days=0, backdating_days=3650
    )
    store = StoreFactory(program=program)
    new_york = ZoneInfo("America/New_York")
    # 23:30 on 30 September in New York is 03:30 on 1 October in UTC.
    record_purchase(
        store=store,
        receipt_id="late",
        amount=Decimal("12.00"),
        currency="EUR",
        occurred_at=datetime(2026, 9, 30, 23, 30, tzinfo=new_york),
    )
    recompute(program=program, period_kind="month", full=True)
    assert value(program, Metric.REVENUE_NON_MEMBER, SEP) == Decimal("12.00")
    assert value(program, Metric.REVENUE_NON_MEMBER, OCT) == 0


def test_quarter_figures(computed):
    recompute(program=computed.program, period_kind="quarter", full=True)
    q3 = date(2026, 7, 1)
    p = computed.program
    # July to September: members bought p1, p2, p4, p5, p6, p10 (340.00), m1, m2 and m3.
    assert value(p, Metric.ACTIVE_MEMBERS, q3, "quarter") == 3
    assert value(p, Metric.PURCHASES_MEMBER, q3, "quarter") == 6
    assert value(p, Metric.REVENUE_MEMBER, q3, "quarter") == Decimal("340.00")
    # Costs: hosting 3 x 450, launch August and September 2 x 100, one gift 5.
    assert value(p, Metric.PROGRAM_COST, q3, "quarter") == Decimal("1555.00")


def test_cohort_retention_by_enrolment_month(computed):
    cells = {
        (c.cohort_month, c.months_after): (c.members, c.active, c.rate)
        for c in KpiCohort.objects.filter(program=computed.program)
    }
    hundred, half, zero = Decimal("100.00"), Decimal("50.00"), Decimal("0.00")
    # August cohort {m1, m2}: both bought in August, m1 in September, m2 in October.
    assert cells[(AUG, 0)] == (2, 2, hundred)
    assert cells[(AUG, 1)] == (2, 1, half)
    assert cells[(AUG, 2)] == (2, 1, half)
    assert cells[(AUG, 3)] == (2, 0, zero)  # November
    # September cohort {m3}: bought in September and October.
    assert cells[(SEP, 0)] == (1, 1, hundred)
    assert cells[(SEP, 1)] == (1, 1, hundred)
    # October cohort {m4}: never bought.
    assert cells[(OCT, 0)] == (1, 0, zero)
    # A cell per cohort and month up to this one; November has no cohort (no one enrolled).
    after_august = months_through_today(AUG)
    assert len(cells) == after_august + (after_august - 1) + (after_august - 2)


def test_members_per_tier_at_the_end_of_each_period(computed):
    p, bronze, silver = computed.program, computed.bronze, computed.silver
    # m1 reached Silver on p4 (180.00 of spend): the change is dated when it was recorded
    # (today), so at the end of September every member still held the entry tier.
    assert value(p, Metric.TIER_MEMBERS, dimension="tier", key=str(bronze.pk)) == 3
    assert not KpiValue.objects.filter(
        program=p, period_start=SEP, dimension="tier", dimension_key=str(silver.pk)
    ).exists()
    now = timezone.localdate(timezone.now(), PARIS).replace(day=1)
    assert value(p, Metric.TIER_MEMBERS, now, dimension="tier", key=str(bronze.pk)) == 3
    assert value(p, Metric.TIER_MEMBERS, now, dimension="tier", key=str(silver.pk)) == 1


def test_target_on_or_off(computed):
    p = computed.program
    retention = KpiTarget.objects.create(
        program=p, metric=Metric.RETENTION_RATE, target_value=Decimal("60")
    )
    attrition = KpiTarget.objects.create(
        program=p,
        metric=Metric.ATTRITION_RATE,
        target_value=Decimal("55"),
        direction=KpiTarget.Direction.LOWER,
    )
    assert retention.is_met(value(p, Metric.RETENTION_RATE)) is False  # 50 < 60
    assert retention.gap(value(p, Metric.RETENTION_RATE)) == Decimal("-10")
    assert attrition.is_met(value(p, Metric.ATTRITION_RATE)) is True  # 50 <= 55
    assert retention.is_met(None) is None


def test_a_program_without_activity_has_no_snapshots(db):
    program = ProgramFactory(slug="empty")
    summary = recompute(program=program, period_kind="month")
    assert summary["total"] == 0
    assert not KpiValue.objects.filter(program=program).exists()


def test_the_time_zone_boundaries_use_the_program_zone_not_the_server_zone(settings, db):
    settings.TIME_ZONE = "Asia/Tokyo"
    shop = build_shop()
    recompute(program=shop.program, period_kind="month", full=True)
    assert value(shop.program, Metric.REVENUE_MEMBER, OCT) == Decimal("95.00")


def test_points_owed_after_a_return_lower_the_outstanding_points(shop):
    # m2 spends the 50 points of p2 on a gift, then returns p2 in full: they owe 50 points.
    redeem(member=shop.m2, reward=shop.reward, channel="staff", now=paris(8, 25))
    shop.give_back("p2", shop.store_a, "r2", paris(8, 26), "50.00")
    recompute(program=shop.program, period_kind="month", full=True)
    p = shop.program
    # August: m1 holds 100, m2 owes 50: 100 + 50 - 50 - 50 = 50 outstanding.
    assert value(p, Metric.LIABILITY_POINTS, AUG) == 50
    assert value(p, Metric.LIABILITY_AMOUNT, AUG) == Decimal("0.50")
    # Points that can expire are m1's 100 only.
    rows = KpiLiabilityByExpiry.objects.filter(program=p, period_kind="month", period_start=AUG)
    assert [(r.expiry_month, r.points) for r in rows] == [(None, 100)]
    # Issued net of the return (100 + 50 - 50), redeemed 50.
    assert value(p, Metric.POINTS_ISSUED, AUG) == 100
    assert value(p, Metric.POINTS_REDEEMED, AUG) == 50


def test_staff_manage_targets_in_the_admin(client, shop):
    client.force_login(StaffUserFactory())
    response = client.get("/admin/analytics/kpitarget/add/")
    assert response.status_code == 200
    response = client.post(
        "/admin/analytics/kpitarget/add/",
        {
            "program": shop.program.pk,
            "metric": Metric.REPURCHASE_RATE,
            "target_value": "40",
            "direction": "higher",
        },
    )
    assert response.status_code == 302
    target = KpiTarget.objects.get(program=shop.program)
    assert (target.metric, target.target_value) == (Metric.REPURCHASE_RATE, Decimal("40"))
