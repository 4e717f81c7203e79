"""Lifecycle bonuses (members/campaigns/lifecycle.py): welcome, birthday, referral and reactivation,
each given once per occasion, through the ledger, idempotent on re-run."""

from datetime import date, datetime, time
from decimal import Decimal
from itertools import count
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from config import nightly as chain
from loyalty import rules
from loyalty.models import Campaign
from members import services
from members.ledger import find_mismatches
from members.models import CampaignAward, Member, PointsEntry, Purchase
from tests.factories import ProgramFactory, StoreFactory, TierFactory, enrol, record_member_purchase

pytestmark = pytest.mark.django_db

PARIS = ZoneInfo("Europe/Paris")
JOB = "grant_lifecycle_bonuses"
_receipts = count(1)


def at(day: date, hour: int = 12) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=PARIS)


@pytest.fixture
def clock(monkeypatch):
    class Clock:
        now = at(date(2026, 1, 5))

    def set_now(moment):
        Clock.now = moment
        return moment

    Clock.set = staticmethod(set_now)
    monkeypatch.setattr(timezone, "now", lambda: Clock.now)
    return Clock


@pytest.fixture
def program(db):
    program = ProgramFactory(return_window_days=10, backdating_days=400)
    TierFactory(program=program, name="Bronze", rank=0)
    return program


@pytest.fixture
def store(program):
    return StoreFactory(program=program)


def lifecycle(program, trigger, points=50, **kwargs):
    return Campaign.objects.create(
        program=program,
        name=f"{trigger} bonus",
        status=Campaign.Status.ACTIVE,
        trigger=trigger,
        starts_at=at(date(2026, 1, 1), 0),
        effect=Campaign.Effect.FIXED,
        effect_value=Decimal(points),
        **kwargs,
    )


def nightly(clock, day: date) -> dict:
    moment = clock.set(at(day, 3))
    return chain.run_job(JOB, now=moment)


def bonuses(member) -> list[int]:
    return list(
        PointsEntry.objects.filter(member=member, kind="bonus")
        .order_by("pk")
        .values_list("points", flat=True)
    )


def buy(clock, store, member, when, amount="20.00"):
    clock.set(when)
    receipt = f"R-{next(_receipts)}"
    record_member_purchase(store, member, receipt, amount, when)
    return Purchase.objects.get(receipt_id=receipt)


# Welcome ----------------------------------------------------------------------------------------


def test_the_welcome_bonus_is_given_at_enrolment_once(clock, program):
    campaign = lifecycle(program, Campaign.Trigger.WELCOME)
    clock.set(at(date(2026, 1, 5)))
    member = enrol(program, email="new@example.fr")
    again = enrol(program, email="new@example.fr")  # the same member, found again
    assert again.pk == member.pk
    member.refresh_from_db()
    assert member.points_available == 50
    nightly(clock, date(2026, 1, 6))
    assert bonuses(member) == [50]
    award = CampaignAward.objects.get(member=member)
    assert (award.campaign_id, award.occasion, award.points) == (campaign.pk, "welcome", 50)
    assert PointsEntry.objects.get(member=member).txn == award.txn
    assert find_mismatches() == []


def test_members_enrolled_before_the_campaign_get_no_welcome_bonus(clock, program):
    clock.set(at(date(2025, 12, 20)))
    member = enrol(program, email="old@example.fr")
    lifecycle(program, Campaign.Trigger.WELCOME)
    nightly(clock, date(2026, 1, 6))
    assert bonuses(member) == []


def test_a_welcome_bonus_after_the_first_purchase_waits_for_it(clock, program, store):
    lifecycle(program, Campaign.Trigger.WELCOME, welcome_after_first_purchase=True)
    clock.set(at(date(2026, 1, 5)))
    member = enrol(program, email="new@example.fr")
    nightly(clock, date(2026, 1, 6))
    assert bonuses(member) == []
    buy(clock, store, member, at(date(2026, 1, 6), 15))
    nightly(clock, date(2026, 1, 7))
    nightly(clock, date(2026, 1, 8))
    assert bonuses(member) == [50]
    assert find_mismatches() == []


def test_a_held_out_member_gets_no_welcome_bonus_but_is_recorded(clock, program):
    campaign = lifecycle(program, Campaign.Trigger.WELCOME, holdout_percent=Decimal("50"))
    clock.set(at(date(2026, 1, 5)))
    members = [enrol(program, email=f"m{i}@example.fr") for i in range(20)]
    held = [m for m in members if rules.is_held_out(m.pk, campaign.pk, Decimal(50))]
    assert 0 < len(held) < 20
    for m in members:
        m.refresh_from_db()
        assert m.points_available == (0 if m in held else 50)
    assert CampaignAward.objects.filter(is_held_out=True).count() == len(held)
    assert find_mismatches() == []


# Birthday ---------------------------------------------------------------------------------------


def test_the_birthday_bonus_is_given_on_the_day_once_a_year(clock, program):
    campaign = lifecycle(program, Campaign.Trigger.BIRTHDAY)
    member = enrol(program, email="b@example.fr", birth_date=date(1990, 3, 14))
    other = enrol(program, email="o@example.fr", birth_date=date(1990, 3, 15))
    nightly(clock, date(2026, 3, 13))
    assert bonuses(member) == []
    summary = nightly(clock, date(2026, 3, 14))
    nightly(clock, date(2026, 3, 14))  # a re-run the same night
    nightly(clock, date(2026, 3, 15))
    assert bonuses(member) == [50]
    assert bonuses(other) == [50]
    assert summary[program.slug][f"{campaign.pk}:birthday"]["given"] == 1
    nightly(clock, date(2027, 3, 14))
    assert bonuses(member) == [50, 50]
    assert set(CampaignAward.objects.filter(member=member).values_list("occasion", flat=True)) == {
        "birthday:2026",
        "birthday:2027",
    }
    assert find_mismatches() == []


def test_born_on_29_february_is_celebrated_on_the_28th_in_other_years(clock, program):
    lifecycle(program, Campaign.Trigger.BIRTHDAY)
    member = enrol(program, email="leap@example.fr", birth_date=date(2000, 2, 29))
    nightly(clock, date(2026, 2, 28))
    assert bonuses(member) == [50]


def test_a_birthday_month_bonus_is_given_once_in_the_month(clock, program):
    lifecycle(program, Campaign.Trigger.BIRTHDAY, birthday_on_day=False)
    member = enrol(program, email="b@example.fr", birth_date=date(1990, 3, 30))
    nightly(clock, date(2026, 2, 28))
    nightly(clock, date(2026, 3, 1))
    nightly(clock, date(2026, 3, 2))
    assert bonuses(member) == [50]


# Referral ---------------------------------------------------------------------------------------


def test_the_referral_bonus_waits_for_the_referees_first_purchase_to_clear(clock, program, store):
    lifecycle(program, Campaign.Trigger.REFERRAL, points=100)
    clock.set(at(date(2026, 1, 5)))
    referrer = enrol(program, email="ref@example.fr")
    referee = enrol(program, email="new@example.fr", referral_code=referrer.referral_code)
    assert bonuses(referrer) == bonuses(referee) == []  # never at sign-up
    buy(clock, store, referee, at(date(2026, 1, 6)))
    nightly(clock, date(2026, 1, 7))
    assert bonuses(referee) == []  # the purchase is still returnable
    # The window (10 days) closes on the 16th: the nightly chain releases, then gives.
    clock.set(at(date(2026, 1, 17), 3))
    chain.run_nightly(now=at(date(2026, 1, 17), 3))
    assert bonuses(referee) == [100]
    assert bonuses(referrer) == [100]
    nightly(clock, date(2026, 1, 18))
    assert bonuses(referrer) == [100]
    assert set(CampaignAward.objects.values_list("member_id", "occasion")) == {
        (referee.pk, "referral"),
        (referrer.pk, f"referee:{referee.pk}"),
    }
    assert find_mismatches() == []


def test_no_referral_bonus_for_a_returned_first_purchase(clock, program, store):
    lifecycle(program, Campaign.Trigger.REFERRAL, points=100)
    clock.set(at(date(2026, 1, 5)))
    referrer = enrol(program, email="ref@example.fr")
    referee = enrol(program, email="new@example.fr", referral_code=referrer.referral_code)
    purchase = buy(clock, store, referee, at(date(2026, 1, 6)))
    clock.set(at(date(2026, 1, 8)))
    services.record_return(
        store=store, receipt_id=purchase.receipt_id, return_id="RET-1", amount=Decimal("5.00")
    )
    buy(clock, store, referee, at(date(2026, 1, 9)))  # a later purchase does not count
    chain.run_nightly(now=clock.set(at(date(2026, 2, 1), 3)))
    assert bonuses(referee) == bonuses(referrer) == []


def test_no_referral_bonus_for_a_self_referral(clock, program, store):
    lifecycle(program, Campaign.Trigger.REFERRAL, points=100)
    clock.set(at(date(2026, 1, 5)))
    member = enrol(program, email="me@example.fr")
    Member.objects.filter(pk=member.pk).update(referred_by=member)
    member.refresh_from_db()
    buy(clock, store, member, at(date(2026, 1, 6)))
    chain.run_nightly(now=clock.set(at(date(2026, 2, 1), 3)))
    assert bonuses(member) == []


def test_referrer_bonuses_stop_at_the_limit_per_referrer(clock, program, store):
    lifecycle(program, Campaign.Trigger.REFERRAL, points=100, referral_limit=1)
    clock.set(at(date(2026, 1, 5)))
    referrer = enrol(program, email="ref@example.fr")
    referees = [
        enrol(program, email=f"new{i}@example.fr", referral_code=referrer.referral_code)
        for i in range(3)
    ]
    for referee in referees:
        buy(clock, store, referee, at(date(2026, 1, 6)))
    summary = chain.run_nightly(now=clock.set(at(date(2026, 2, 1), 3)))
    assert bonuses(referrer) == [100]
    assert [bonuses(r) for r in referees] == [[100], [100], [100]]
    job = summary[JOB][program.slug]
    assert next(v for k, v in job.items() if k.endswith(":referral"))["over_limit"] == 2
    chain.run_nightly(now=clock.set(at(date(2026, 2, 2), 3)))
    assert bonuses(referrer) == [100]


# Reactivation -----------------------------------------------------------------------------------


def test_the_reactivation_bonus_is_given_once_per_inactive_spell(clock, program, store):
    lifecycle(program, Campaign.Trigger.REACTIVATION, points=30, inactive_months=6)
    clock.set(at(date(2025, 6, 1)))
    member = enrol(program, email="sleepy@example.fr")
    buy(clock, store, member, at(date(2025, 6, 10)))
    active = enrol(program, email="busy@example.fr")
    buy(clock, store, active, at(date(2025, 12, 20)))
    nightly(clock, date(2026, 1, 5))  # 6 months after 10 June is 10 December: inactive
    nightly(clock, date(2026, 1, 6))
    assert bonuses(member) == [30]
    assert bonuses(active) == []
    # Back to life, then asleep again: a new spell, a new bonus.
    buy(clock, store, member, at(date(2026, 1, 20)))
    nightly(clock, date(2026, 6, 1))
    assert bonuses(member) == [30]
    nightly(clock, date(2026, 7, 21))
    assert bonuses(member) == [30, 30]
    assert find_mismatches() == []


# Budget and statuses ----------------------------------------------------------------------------


def test_a_lifecycle_budget_caps_the_bonuses_given(clock, program):
    campaign = lifecycle(program, Campaign.Trigger.BIRTHDAY, budget_points=100)
    members = [
        enrol(program, email=f"b{i}@example.fr", birth_date=date(1990, 3, 14)) for i in range(3)
    ]
    summary = nightly(clock, date(2026, 3, 14))
    assert sorted(len(bonuses(m)) for m in members) == [0, 1, 1]
    assert summary[program.slug][f"{campaign.pk}:birthday"] == {
        "given": 2,
        "points": 100,
        "held_out": 0,
        "over_budget": 1,
    }
    assert PointsEntry.objects.filter(kind="bonus").count() == 2
    assert find_mismatches() == []


def test_the_nightly_job_moves_campaign_statuses_with_time(clock, program):
    scheduled = lifecycle(program, Campaign.Trigger.BIRTHDAY)
    scheduled.status = Campaign.Status.SCHEDULED
    scheduled.starts_at = at(date(2026, 2, 1), 0)
    scheduled.ends_at = at(date(2026, 3, 1), 0)
    scheduled.save()
    nightly(clock, date(2026, 1, 20))
    scheduled.refresh_from_db()
    assert scheduled.status == Campaign.Status.SCHEDULED
    nightly(clock, date(2026, 2, 2))
    scheduled.refresh_from_db()
    assert scheduled.status == Campaign.Status.ACTIVE
    nightly(clock, date(2026, 3, 2))
    scheduled.refresh_from_db()
    assert scheduled.status == Campaign.Status.ENDED


def test_a_dry_run_gives_nothing(clock, program):
    lifecycle(program, Campaign.Trigger.BIRTHDAY)
    member = enrol(program, email="b@example.fr", birth_date=date(1990, 3, 14))
    chain.run_job(JOB, now=clock.set(at(date(2026, 3, 14), 3)), dry_run=True)
    assert bonuses(member) == []
    assert not CampaignAward.objects.exists()
