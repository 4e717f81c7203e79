"""A small shop whose every KPI is computed by hand in the tests (Europe/Paris, 2026).

Stores: A (shop), W (web). Points: 1 per euro, available at once (return window 0), no expiry.
Members: m1 and m2 enrolled 1 August, m3 on 10 September, m4 on 5 October (never buys).
Tiers: Bronze (entry), Silver from 150 of qualifying spend (m1 reaches it on p4).

    p1  m1    A  10 Aug 12:00   100.00
    p2  m2    A  20 Aug 12:00    50.00
    p3  anon  A  15 Aug 12:00    40.00
    p4  m1    A   5 Sep 12:00    80.00
    p5  m1    W  20 Sep 12:00    20.00
    p6  m3    W  12 Sep 12:00    60.00
    p7  anon  A   3 Sep 12:00    30.00
    p8  anon  W  25 Sep 12:00    10.00
    p9  anon  A  28 Sep 12:00    50.00  returned in full on 29 Sep
    p10 m3    A  29 Sep 12:00    40.00  10.00 returned on 2 Oct (10 points back)
    p11 m2    A   1 Oct 00:30    70.00  (30 Sep 22:30 UTC: October in Paris)
    p12 m3    W  10 Oct 12:00    25.00
    p13 anon  A  12 Oct 12:00    45.00

Rewards: m1 redeems a gift (50 points, costs the business 5.00) on 21 Sep, and another on
22 Sep, cancelled on 23 Sep (points refunded, no cost).
Costs: hosting 450.00 a month from 1 January 2026; a launch of 1,200.00 from 10 August 2026
amortised over 12 months (100.00 a month, August 2026 to July 2027).
"""

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from loyalty.models import Program, ProgramCost
from members.models import Member
from members.services import record_return
from rewards.models import Reward
from rewards.services import cancel, redeem
from tests.factories import (
    ProgramCostFactory,
    ProgramFactory,
    StoreFactory,
    TierFactory,
    enrol,
    record_member_purchase,
)

PARIS = ZoneInfo("Europe/Paris")


def paris(month, day, hour=12, minute=0, year=2026):
    return datetime(year, month, day, hour, minute, tzinfo=PARIS)


@dataclass
class Shop:
    program: Program
    store_a: object
    store_w: object
    m1: Member
    m2: Member
    m3: Member
    m4: Member
    bronze: object
    silver: object
    reward: Reward

    def buy(self, receipt, member, store, when, amount):
        return record_member_purchase(store, member, receipt, amount, when)

    def give_back(self, receipt, store, return_id, when, amount):
        return record_return(
            store=store,
            receipt_id=receipt,
            return_id=return_id,
            amount=Decimal(amount),
            occurred_at=when,
        )


def months_through_today(first: date) -> int:
    """The months from the one of `first` to today's in Paris, both counted: the periods a
    full recompute covers when the data start then (the data are dated 2026, today moves)."""
    today = timezone.localdate(timezone.now(), PARIS)
    return (today.year - first.year) * 12 + today.month - first.month + 1


def enrol_on(program, email, when):
    member = enrol(program, email=email)
    Member.objects.filter(pk=member.pk).update(enrolled_at=when)
    member.refresh_from_db()
    return member


def build_shop(time_zone="Europe/Paris") -> Shop:
    program = ProgramFactory(
        slug="shop",
        time_zone=time_zone,
        return_window_days=0,
        backdating_days=3650,
        gross_margin_rate=Decimal("0.35"),
        point_cost_amount=Decimal("0.01"),
    )
    bronze = TierFactory(program=program, name="Bronze", rank=0)
    silver = TierFactory(program=program, name="Silver", rank=1, qualify_threshold=Decimal(150))
    store_a = StoreFactory(program=program, slug="a", name="A", channel="shop")
    store_w = StoreFactory(program=program, slug="w", name="W", channel="web")
    m1 = enrol_on(program, "m1@example.com", paris(8, 1, 10))
    m2 = enrol_on(program, "m2@example.com", paris(8, 1, 10))
    m3 = enrol_on(program, "m3@example.com", paris(9, 10, 10))
    m4 = enrol_on(program, "m4@example.com", paris(10, 5, 10))
    reward = Reward.objects.create(
        program=program,
        name_fr="Cadeau",
        kind=Reward.Kind.GIFT,
        points_cost=50,
        cost_amount=Decimal("5.00"),
    )
    shop = Shop(program, store_a, store_w, m1, m2, m3, m4, bronze, silver, reward)
    shop.buy("p1", m1, store_a, paris(8, 10), "100.00")
    shop.buy("p2", m2, store_a, paris(8, 20), "50.00")
    shop.buy("p3", None, store_a, paris(8, 15), "40.00")
    shop.buy("p4", m1, store_a, paris(9, 5), "80.00")
    shop.buy("p5", m1, store_w, paris(9, 20), "20.00")
    shop.buy("p6", m3, store_w, paris(9, 12), "60.00")
    shop.buy("p7", None, store_a, paris(9, 3), "30.00")
    shop.buy("p8", None, store_w, paris(9, 25), "10.00")
    shop.buy("p9", None, store_a, paris(9, 28), "50.00")
    shop.give_back("p9", store_a, "r9", paris(9, 29), "50.00")
    shop.buy("p10", m3, store_a, paris(9, 29), "40.00")
    redeem(member=m1, reward=reward, channel="staff", now=paris(9, 21))
    second = redeem(member=m1, reward=reward, channel="staff", now=paris(9, 22))
    cancel(redemption=second, reason="changed their mind", now=paris(9, 23))
    shop.buy("p11", m2, store_a, paris(10, 1, 0, 30), "70.00")
    shop.give_back("p10", store_a, "r10", paris(10, 2), "10.00")
    shop.buy("p12", m3, store_w, paris(10, 10), "25.00")
    shop.buy("p13", None, store_a, paris(10, 12), "45.00")
    ProgramCostFactory(
        program=program,
        kind=ProgramCost.Kind.RECURRING,
        label="Hosting",
        cost_amount=Decimal("450.00"),
        starts_on=date(2026, 1, 1),
    )
    ProgramCostFactory(
        program=program,
        kind=ProgramCost.Kind.ONE_OFF,
        category=ProgramCost.Category.DESIGN_LAUNCH,
        label="Launch",
        cost_amount=Decimal("1200.00"),
        starts_on=date(2026, 8, 10),
        amortisation_months=12,
    )
    return shop


@pytest.fixture
def shop(db):
    return build_shop()
