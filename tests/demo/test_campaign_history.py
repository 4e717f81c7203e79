"""The demo's campaigns (seed_demo): past, running and scheduled campaigns and segments, and a
past campaign whose bulk-written history is what live traffic would have left (awards split
by the engine's hold-out hash, bonus rows in the purchases' ledger transactions, balances to
match) and shows a measurable uplift at the default demo size."""

from collections import defaultdict
from datetime import date
from io import StringIO

import pytest
from django.core.management import call_command
from django.db.models import Count, F, Sum
from django.utils import timezone

from demo.campaign_history import generate_campaign_history
from demo.history import generate_history
from demo.program import PAST_CAMPAIGN, seed_campaigns, seed_program
from loyalty import rules
from loyalty.models import Campaign, Segment
from members.campaigns import campaign_results
from members.models import CampaignAward, Member, PointsEntry, Purchase, SegmentMembership

pytestmark = pytest.mark.django_db

MEMBERS = 300  # seed_demo's default: the uplift must be measurable at that size
COUNTED = [Campaign, Segment, CampaignAward, Member, Purchase, PointsEntry, SegmentMembership]


def seed_demo():
    out = StringIO()
    call_command("seed_demo", members=MEMBERS, seed=42, stdout=out)
    return out.getvalue()


def counts():
    return {model.__name__: model.objects.count() for model in COUNTED}


def test_seed_demo_creates_campaigns_in_every_state_and_sized_segments():
    out = seed_demo()

    program = Campaign.objects.get(name=PAST_CAMPAIGN).program
    campaigns = {c.name: c for c in Campaign.objects.filter(program=program)}
    assert len(campaigns) == 5
    now = timezone.now()
    past = campaigns[PAST_CAMPAIGN]
    assert past.status == Campaign.Status.ENDED
    assert past.ends_at < now
    assert past.holdout_percent > 0
    weekend = campaigns["Week-end points doublés"]
    assert weekend.status == Campaign.Status.ACTIVE
    assert weekend.is_exclusive
    assert weekend.weekdays == [5, 6]
    assert weekend.budget_points
    assert weekend.budget_period == Campaign.Period.DAY
    assert weekend.period_budget_points
    assert weekend.starts_at <= now < weekend.ends_at
    scheduled = [c for c in campaigns.values() if c.status == Campaign.Status.SCHEDULED]
    assert len(scheduled) == 1
    assert scheduled[0].starts_at > now
    assert scheduled[0].effect == Campaign.Effect.FIXED
    assert scheduled[0].target_categories
    triggers = {c.trigger for c in campaigns.values() if c.status == Campaign.Status.ACTIVE}
    assert {Campaign.Trigger.WELCOME, Campaign.Trigger.BIRTHDAY} <= triggers

    segments = Segment.objects.filter(program=program)
    assert {s.name for s in segments} == {"Champions", "Inactifs depuis 90 jours"}
    for segment in segments:
        assert segment.refreshed_at is not None
        assert 0 < segment.member_count < MEMBERS
        assert segment.memberships.count() == segment.member_count
    assert f"campaign {PAST_CAMPAIGN}: " in out


def test_past_campaign_history_matches_what_the_engine_would_have_written():
    seed_demo()
    past = Campaign.objects.get(name=PAST_CAMPAIGN)
    awards = CampaignAward.objects.filter(campaign=past)

    # Reached: every member with a purchase earning points in the campaign's dates, one award
    # per such purchase, the group decided by the engine's hash.
    in_window = Purchase.objects.filter(
        program=past.program,
        member__isnull=False,
        points_earned__gt=0,
        occurred_at__gte=past.starts_at,
        occurred_at__lt=past.ends_at,
    )
    assert set(awards.values_list("purchase_id", flat=True)) == set(
        in_window.values_list("pk", flat=True)
    )
    groups = defaultdict(set)
    for member_id, held_out in awards.values_list("member_id", "is_held_out"):
        assert held_out == rules.is_held_out(member_id, past.pk, past.holdout_percent)
        groups[held_out].add(member_id)
    assert len(groups[False]) > len(groups[True]) >= 5  # a 20% hold-out
    assert not awards.filter(is_held_out=True, points__gt=0).exists()

    # Treated purchases: the bonus (x2: as many points as the grid gave) is a bonus row in the
    # earn row's ledger transaction, on the purchase's points, breakdown and stored answer.
    treated = awards.filter(is_held_out=False).select_related("purchase")
    assert treated.count() > 0
    for award in treated:
        purchase = award.purchase
        rows = {e.kind: e for e in PointsEntry.objects.filter(purchase=purchase)}
        assert set(rows) == {"earn", "bonus"}
        assert rows["bonus"].txn == rows["earn"].txn == award.txn
        assert rows["bonus"].bucket == rows["earn"].bucket
        assert award.points == rows["bonus"].points == rows["earn"].points
        assert purchase.points_earned == 2 * rows["earn"].points
        line = purchase.breakdown[-1]
        assert line["code"] == "campaign"
        assert line["rule_id"] == past.pk
        assert line["points"] == award.points
        assert line["name"] == PAST_CAMPAIGN
        assert f'"points_earned":{purchase.points_earned}}}' in purchase.response
    held = awards.filter(is_held_out=True)
    assert not PointsEntry.objects.filter(
        kind="bonus", purchase__in=held.values("purchase")
    ).exists()

    call_command("check_ledger", stdout=StringIO())  # raises CommandError on any mismatch


def test_past_campaign_shows_a_positive_measurable_uplift():
    seed_demo()
    past = Campaign.objects.get(name=PAST_CAMPAIGN)

    results = campaign_results(past)

    during = results.during
    assert during.treated > 0
    assert during.held_out > 0
    assert during.frequency.difference > 0
    assert during.frequency.low > 0  # the 95% interval excludes zero
    assert during.revenue.difference > 0
    assert during.incremental_revenue > 0
    assert (
        results.points
        == CampaignAward.objects.filter(campaign=past).aggregate(n=Sum("points"))["n"]
    )
    assert results.roi_percent is not None


def test_second_seed_demo_creates_nothing_twice():
    seed_demo()
    before = counts()
    balances = list(Member.objects.order_by("pk").values_list("pk", F("points_available")))

    out = seed_demo()

    assert counts() == before
    assert list(Member.objects.order_by("pk").values_list("pk", F("points_available"))) == (
        balances
    )
    assert "history already present" in out
    # The step itself is idempotent too: a campaign with awards gets nothing more.
    past = Campaign.objects.get(name=PAST_CAMPAIGN)
    again = generate_campaign_history(campaign=past, segments=[], seed=42)
    assert again.awards == again.extra_purchases == again.reached == 0
    assert counts() == before
    call_command("check_ledger", stdout=StringIO())


def test_campaign_history_is_written_in_bulk(django_assert_max_num_queries):
    """The number of queries does not grow with the members: set-based, no loop of queries."""
    program = seed_program(launch=date(2025, 1, 1))
    demo = seed_campaigns(program, now=timezone.now())
    generate_history(program=program, members=MEMBERS, months=12, seed=7)

    with django_assert_max_num_queries(40):
        stats = generate_campaign_history(campaign=demo.past, segments=demo.segments, seed=7)

    assert stats.reached > 50
    assert 0 < stats.held_out < stats.reached
    assert stats.extra_purchases > 0
    assert stats.awards == CampaignAward.objects.filter(campaign=demo.past).count()
    per_group = dict(
        CampaignAward.objects.filter(campaign=demo.past)
        .values_list("is_held_out")
        .annotate(n=Count("member", distinct=True))
    )
    assert per_group == {False: stats.reached - stats.held_out, True: stats.held_out}
    assert set(stats.segments) == {s.name for s in demo.segments}
    call_command("check_ledger", stdout=StringIO())
