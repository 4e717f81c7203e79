"""Segments computed in SQL (members/campaigns/segments.py): RFM quintiles, inactivity, tier,
enrolment cohort; refreshed by the nightly job; usable as a campaign condition; sized in the
admin."""

from datetime import date, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from config import nightly
from loyalty.models import Campaign, Segment, Store
from members import services
from members.campaigns.segments import refresh_segment
from members.models import Member, SegmentMembership
from tests.factories import ProgramFactory, StaffUserFactory, StoreFactory, TierFactory, enrol

pytestmark = pytest.mark.django_db


@pytest.fixture
def program(db):
    program = ProgramFactory(return_window_days=10, backdating_days=400)
    TierFactory(program=program, name="Bronze", rank=0)
    return program


@pytest.fixture
def store(program):
    return StoreFactory(program=program)


def buy(store, member, when, amount):
    services.record_purchase(
        store=store,
        receipt_id=f"R-{member.pk}-{when.timestamp()}",
        amount=Decimal(amount),
        currency="EUR",
        occurred_at=when,
        card_number=member.card_number,
    )


@pytest.fixture
def five_buyers(program, store):
    """m1..m5: m_k buys k times 10k euros, the last time 6 - k days ago (so recency,
    frequency and spend all rank them 1..5); m0 never buys."""
    now = timezone.now()
    members = {}
    for k in range(1, 6):
        member = enrol(program, email=f"m{k}@example.fr")
        for j in range(k):
            buy(store, member, now - timedelta(days=6 - k, hours=j + 1), f"{10 * k}.00")
        members[k] = member
    members[0] = enrol(program, email="m0@example.fr")
    return members


def segment(program, **kwargs):
    return Segment.objects.create(program=program, name=kwargs.pop("name", "S"), **kwargs)


def in_segment(seg, members):
    ids = set(SegmentMembership.objects.filter(segment=seg).values_list("member_id", flat=True))
    return sorted(k for k, m in members.items() if m.pk in ids)


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        ({"min_frequency_score": 4}, [4, 5]),
        ({"min_recency_score": 3, "min_monetary_score": 5}, [5]),
        ({"min_monetary_score": 1}, [1, 2, 3, 4, 5]),  # any buyer; m0 scores 0
        # Last purchases 5 days, 4 days and 3 days + 1 hour ago; m4 2 days + 1 hour ago.
        ({"inactive_days": 3}, [1, 2, 3]),
        ({}, [0, 1, 2, 3, 4, 5]),
    ],
)
def test_rfm_and_inactivity_conditions(program, five_buyers, conditions, expected):
    seg = segment(program, **conditions)
    count = refresh_segment(seg, now=timezone.now())
    assert in_segment(seg, five_buyers) == expected
    seg.refresh_from_db()
    assert seg.member_count == count == len(expected)
    assert seg.refreshed_at is not None


def test_tier_and_enrolment_cohort_conditions(program):
    gold = TierFactory(program=program, name="Gold", rank=1)
    members = {k: enrol(program, email=f"c{k}@example.fr") for k in range(3)}
    Member.objects.filter(pk=members[1].pk).update(tier=gold)
    paris = program.tzinfo
    # Enrolled at 23:30 in Paris on 31 October, 00:30 on 1 November, and in December.
    moments = [
        datetime.combine(date(2026, 10, 31), time(23, 30), tzinfo=paris),
        datetime.combine(date(2026, 11, 1), time(0, 30), tzinfo=paris),
        datetime.combine(date(2026, 12, 1), time(12), tzinfo=paris),
    ]
    for k, moment in enumerate(moments):
        Member.objects.filter(pk=members[k].pk).update(enrolled_at=moment)
    november = segment(
        program, name="Nov", enrolled_from=date(2026, 11, 1), enrolled_until=date(2026, 12, 1)
    )
    gold_members = segment(program, name="Gold", tier=gold)
    now = timezone.now()
    refresh_segment(november, now=now)
    refresh_segment(gold_members, now=now)
    assert in_segment(november, members) == [1]
    assert in_segment(gold_members, members) == [1]


def test_a_refresh_replaces_the_members_and_the_nightly_job_refreshes(program, five_buyers):
    seg = segment(program, min_frequency_score=5)
    SegmentMembership.objects.create(segment=seg, member=five_buyers[0])  # stale
    summary = nightly.run_job("refresh_segments", programs=[program])
    assert summary[program.slug]["S"] == 1
    assert in_segment(seg, five_buyers) == [5]
    nightly.run_job("refresh_segments", programs=[program])
    assert in_segment(seg, five_buyers) == [5]


def test_a_segment_is_a_campaign_condition(program, store, five_buyers):
    seg = segment(program, min_frequency_score=5)
    refresh_segment(seg, now=timezone.now())
    Campaign.objects.create(
        program=program,
        name="Best customers",
        status=Campaign.Status.ACTIVE,
        starts_at=timezone.now() - timedelta(days=1),
        effect=Campaign.Effect.FIXED,
        effect_value=Decimal(100),
        segment=seg,
    )
    when = timezone.now() - timedelta(minutes=1)
    store = Store.objects.select_related("program").get(pk=store.pk)  # as a request loads it
    buy(store, five_buyers[5], when, "10.00")
    buy(store, five_buyers[4], when, "10.00")
    five_buyers[5].refresh_from_db()
    five_buyers[4].refresh_from_db()
    # Pending: their earlier purchases (k x 10k) + this one (10) + the bonus for m5 only.
    assert five_buyers[5].points_pending == 5 * 50 + 10 + 100
    assert five_buyers[4].points_pending == 4 * 40 + 10


def test_staff_see_each_segments_size(client, program, five_buyers):
    seg = segment(program, name="Frequent", min_frequency_score=4)
    refresh_segment(seg, now=timezone.now())
    client.force_login(StaffUserFactory())
    page = client.get("/admin/loyalty/segment/")
    assert page.status_code == 200
    row = next(line for line in page.content.decode().splitlines() if "field-member_count" in line)
    assert ">2<" in row


def test_a_segment_saved_in_the_admin_is_sized_at_once_and_can_be_refreshed(
    client, program, five_buyers
):
    client.force_login(StaffUserFactory())
    response = client.post(
        "/admin/loyalty/segment/add/",
        {"program": program.pk, "name": "Buyers", "min_monetary_score": "1"},
    )
    assert response.status_code == 302
    seg = Segment.objects.get(name="Buyers")
    assert seg.member_count == 5
    SegmentMembership.objects.filter(segment=seg).delete()
    response = client.post(
        "/admin/loyalty/segment/",
        {"action": "refresh_segments", "_selected_action": [seg.pk]},
    )
    assert response.status_code == 302
    assert in_segment(seg, five_buyers) == [1, 2, 3, 4, 5]
