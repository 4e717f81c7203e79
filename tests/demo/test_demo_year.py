"""A year of nights on the demo program: seed it, then run the nightly chain every night for
400 nights with no new purchase. The rules say: pending points are released after 30 days,
every point expires 12 months after it was earned (first in, first out, after the demo's
redemptions), tiers only ever go down (one step per review), each email goes once, and the
ledger stays consistent throughout."""

from datetime import datetime, time, timedelta
from io import StringIO

import pytest
from django.core import mail
from django.core.management import call_command
from django.db.models import Sum
from django.utils import timezone

from config import nightly
from loyalty.models import Campaign, Program
from members.ledger import find_mismatches
from members.models import Member, MemberNotification, PointsEntry, TierChange

pytestmark = pytest.mark.django_db


def test_a_year_of_nights_on_the_demo_program(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    call_command("seed_demo", members=60, months=12, seed=5, stdout=StringIO())
    program = Program.objects.get(slug="maison-lumiere")
    # A year without purchases and without lifecycle bonuses: the demo's welcome and birthday
    # campaigns (active) would give points that have not expired by the last night.
    Campaign.objects.filter(program=program).exclude(trigger=Campaign.Trigger.PURCHASE).update(
        status=Campaign.Status.PAUSED
    )
    tz = program.tzinfo
    start_ranks = dict(Member.objects.values_list("pk", "tier__rank"))
    assert Member.objects.filter(points_pending__gt=0).exists()  # recent purchases pending
    assert len(set(start_ranks.values())) >= 2

    today = timezone.localtime(timezone.now(), tz).date()
    for day in range(1, 401):
        night = datetime.combine(today + timedelta(days=day), time(2, 30), tzinfo=tz)
        nightly.run_nightly(now=night)
        if day in (31, 200, 400):
            assert find_mismatches() == [], day
        if day == 31:
            # Every return window has closed: nothing is pending any more.
            assert not Member.objects.filter(points_pending__gt=0).exists()

    # Nothing was bought for over a year: every point has expired (and none twice).
    assert not Member.objects.exclude(points_available=0).exists()
    totals = PointsEntry.objects.aggregate(total=Sum("points"))
    assert totals["total"] == 0
    assert not PointsEntry.objects.filter(kind="expire", points__gt=0).exists()

    # Without spend, a tier can only go down, one step per review.
    for change in TierChange.objects.select_related("from_tier", "to_tier"):
        assert change.reason == TierChange.Reason.DOWNGRADE, change
        assert change.to_tier.rank == change.from_tier.rank - 1
    for member in Member.objects.select_related("tier"):
        assert member.tier.rank <= start_ranks[member.pk]

    # Each email went once: one per notification, and a notification per (member, kind, key).
    assert len(mail.outbox) == MemberNotification.objects.filter(sent_at__isnull=False).count()
    assert MemberNotification.objects.filter(kind="tier_changed").count() == (
        TierChange.objects.count()
    )
