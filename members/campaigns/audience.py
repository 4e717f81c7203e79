"""Who a campaign reaches: the active members its member conditions select, the facts its
purchase conditions need, and the running campaigns a member qualifies for.

Facts that cost a query (the member's n-th purchase, their segments) are read only when a
campaign running at the purchase's time asks for them. With no campaign running, a purchase
makes no query here.
"""

from datetime import date, datetime, time

from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from loyalty import rules
from loyalty.models import Campaign, Program
from loyalty.selectors import program_campaigns

from ..models import Member, Purchase, SegmentMembership

# Audience and facts -----------------------------------------------------------------------------


def local_midnight(program: Program, day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=program.tzinfo)


def audience(campaign: Campaign) -> QuerySet:
    """The active members of the campaign's program its member conditions select (tiers,
    enrolment dates, segment)."""
    program = campaign.program
    members = Member.objects.filter(program=program, status=Member.Status.ACTIVE)
    tier_ids = [t.pk for t in campaign.tiers.all()]
    if tier_ids:
        members = members.filter(tier_id__in=tier_ids)
    if campaign.enrolled_since:
        members = members.filter(enrolled_at__gte=local_midnight(program, campaign.enrolled_since))
    if campaign.enrolled_before:
        members = members.filter(enrolled_at__lt=local_midnight(program, campaign.enrolled_before))
    if campaign.segment_id:
        members = members.filter(
            Exists(
                SegmentMembership.objects.filter(
                    segment_id=campaign.segment_id, member=OuterRef("pk")
                )
            )
        )
    return members


def campaign_facts(
    program: Program, member: Member, occurred_at: datetime, live: list[rules.Campaign]
) -> rules.CampaignFacts:
    """The facts the live campaigns' conditions need: a query for the member's purchase
    number or segments only when one of them asks for it."""
    tz = program.tzinfo
    number = None
    if any(c.purchase_number is not None for c in live):
        number = Purchase.objects.filter(member_id=member.pk).count() + 1
    segments = frozenset()
    wanted = {c.segment_id for c in live if c.segment_id is not None}
    if wanted:
        segments = frozenset(
            SegmentMembership.objects.filter(
                member_id=member.pk, segment_id__in=wanted
            ).values_list("segment_id", flat=True)
        )
    return rules.CampaignFacts(
        local_time=occurred_at.astimezone(tz),
        member_id=member.pk,
        tier_id=member.tier_id,
        enrolled_on=member.enrolled_at.astimezone(tz).date(),
        purchase_number=number,
        segment_ids=segments,
    )


def member_campaigns(member: Member, *, now: datetime | None = None) -> list[rules.Campaign]:
    """The purchase campaigns running now that this member qualifies for on the member's side
    (tier, enrolment date, segment; not held out), for the member portal. Conditions on the
    purchase itself (store, day, basket...) are the campaign's to show."""
    now = now or timezone.now()
    program = member.program
    live = program_campaigns(program).live(now)
    if not live:
        return []
    facts = campaign_facts(program, member, now, live)
    return [
        c
        for c in live
        if (not c.tier_ids or facts.tier_id in c.tier_ids)
        and (c.enrolled_since is None or facts.enrolled_on >= c.enrolled_since)
        and (c.enrolled_before is None or facts.enrolled_on < c.enrolled_before)
        and (c.segment_id is None or c.segment_id in facts.segment_ids)
        and not rules.is_held_out(member.pk, c.id, c.holdout_percent)
    ]
