"""Lifecycle bonuses: welcome, birthday, referral and reactivation campaigns.

A lifecycle campaign (`Campaign.trigger` other than purchase) gives a fixed bonus once per
member and occasion: `welcome`, `birthday:<year>`, `referral` (the referee) and
`referee:<member id>` (the referrer, once per referee), `reactivation:<date of the last
activity>` (once per inactive spell). The unique (campaign, member, occasion) award makes a
re-run give nothing twice. The bonus is available at once (ledger kind bonus), its ledger rows
share the award's `txn`.

The nightly job `grant_lifecycle_bonuses` selects the members due in SQL, per campaign, in
batches; each batch locks its members (in id order), drops those already awarded, splits the
rest by the campaign's hold-out (held out: an award of 0 points, no bonus), takes what the
budget allows, and writes the ledger rows and awards in bulk. Welcome bonuses are also given
at enrolment (`grant_welcome`), in the enrolment's transaction, unless the campaign waits for
the first purchase.

Conditions a lifecycle campaign can set: tiers, members enrolled since/before a date, a
segment. Its dates bound when it gives (the night's time must fall within them); a welcome
bonus only goes to members enrolled within them, a referral only for referees enrolled within.
"""

import uuid
from datetime import datetime

from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from loyalty import rules
from loyalty.models import Campaign, Program
from loyalty.sql import parse_dt

from .. import ledger
from ..batches import Context, batch_transaction
from ..ledger import Bucket, BulkPosting, Kind
from ..models import CampaignAward, Member, Purchase
from ..tiers import add_months
from .audience import audience, local_midnight
from .budgets import take_budget


def _running(program: Program, trigger: str, moment: datetime) -> QuerySet:
    return (
        Campaign.objects.filter(
            program=program, trigger=trigger, status__in=Campaign.RUNNING, starts_at__lte=moment
        )
        .filter(Q(ends_at__isnull=True) | Q(ends_at__gt=moment))
        .prefetch_related("tiers")
        .order_by("pk")
    )


def _not_awarded(members: QuerySet, campaign: Campaign, occasion) -> QuerySet:
    """Members without an award of this campaign for `occasion` (a string or an expression)."""
    return members.exclude(
        Exists(
            CampaignAward.objects.filter(
                campaign=campaign, member=OuterRef("pk"), occasion=occasion
            )
        )
    )


# Granting ---------------------------------------------------------------------------------------


def _grant(
    program: Program, campaign: Campaign, due: list[tuple[int, str]], *, now: datetime
) -> dict:
    """Give the campaign's bonus to (member id, occasion) pairs whose members the caller has
    locked and which have no award yet. Returns counts."""
    points = int(campaign.effect_value)
    treated, held = [], []
    for pair in due:
        held_out = rules.is_held_out(pair[0], campaign.pk, campaign.holdout_percent)
        (held if held_out else treated).append(pair)
    local_day = timezone.localtime(now, program.tzinfo).date()
    granted = take_budget(campaign, points, len(treated), local_day) if treated else 0
    given = treated[:granted]
    awards, postings = [], []
    for member_id, occasion in given:
        txn = uuid.uuid4()
        postings.append(
            BulkPosting(
                member_id=member_id,
                kind=Kind.BONUS,
                bucket=Bucket.AVAILABLE,
                points=points,
                txn=txn,
                effective_at=now,
                reason=campaign.name[:200],
            )
        )
        awards.append(_award(program, campaign, member_id, occasion, points, now, txn=txn))
    awards += [_award(program, campaign, m, o, 0, now, held_out=True) for m, o in held]
    ledger.post_many(program.pk, postings, now=now)
    CampaignAward.objects.bulk_create(awards)
    return {
        "given": len(given),
        "points": len(given) * points,
        "held_out": len(held),
        "over_budget": len(treated) - len(given),
    }


def _award(program, campaign, member_id, occasion, points, now, *, txn=None, held_out=False):
    return CampaignAward(
        program=program,
        campaign=campaign,
        member_id=member_id,
        occasion=occasion,
        points=points,
        is_held_out=held_out,
        occurred_at=now,
        txn=txn,
    )


def _grant_in_batches(ctx: Context, campaign: Campaign, candidates) -> dict:
    """Grant to the (member id, occasion) pairs `candidates(after_id, limit)` returns, batch by
    batch (ordered by member id); each batch re-checks its pairs under the members' locks."""
    summary = {"given": 0, "points": 0, "held_out": 0, "over_budget": 0}
    last = 0
    while True:
        batch = candidates(last, ctx.batch_size)
        if not batch:
            return summary
        last = batch[-1][0]
        with batch_transaction(ctx):
            ids = set(ledger.lock_members([m for m, _o in batch]))
            done = set(
                CampaignAward.objects.filter(
                    campaign=campaign, member_id__in=ids, occasion__in={o for _m, o in batch}
                ).values_list("member_id", "occasion")
            )
            due = [(m, o) for m, o in batch if m in ids and (m, o) not in done]
            for key, value in _grant(ctx.program, campaign, due, now=ctx.now).items():
                summary[key] += value


def _welcome(ctx: Context, campaign: Campaign) -> dict:
    members = _not_awarded(audience(campaign), campaign, "welcome").filter(
        enrolled_at__gte=campaign.starts_at
    )
    if campaign.ends_at:
        members = members.filter(enrolled_at__lt=campaign.ends_at)
    if campaign.welcome_after_first_purchase:
        members = members.filter(Exists(Purchase.objects.filter(member=OuterRef("pk"))))

    def candidates(after, limit):
        rows = members.filter(pk__gt=after).order_by("pk").values_list("pk", flat=True)[:limit]
        return [(pk, "welcome") for pk in rows]

    return _grant_in_batches(ctx, campaign, candidates)


def _birthday(ctx: Context, campaign: Campaign) -> dict:
    night = ctx.night
    occasion = f"birthday:{night.year}"
    members = _not_awarded(audience(campaign), campaign, occasion).filter(
        birth_date__month=night.month
    )
    if campaign.birthday_on_day:
        days = [night.day]
        last_of_february = night.month == 2 and night.day == 28
        if last_of_february and not _is_leap(night.year):
            days.append(29)  # born on 29 February: celebrated on the 28th in other years
        members = members.filter(birth_date__day__in=days)

    def candidates(after, limit):
        rows = members.filter(pk__gt=after).order_by("pk").values_list("pk", flat=True)[:limit]
        return [(pk, occasion) for pk in rows]

    return _grant_in_batches(ctx, campaign, candidates)


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _reactivation(ctx: Context, campaign: Campaign) -> dict:
    """Members without activity for `inactive_months` (last activity, or enrolment), once per
    inactive spell: the occasion names the local date the spell began."""
    cutoff = local_midnight(ctx.program, add_months(ctx.night, -campaign.inactive_months))
    members = (
        audience(campaign)
        .annotate(since=Coalesce("last_activity_at", "enrolled_at"))
        .filter(since__lt=cutoff)
    )
    tz = ctx.program.tzinfo

    def candidates(after, limit):
        rows = members.filter(pk__gt=after).order_by("pk").values_list("pk", "since")[:limit]
        return [
            (pk, f"reactivation:{timezone.localtime(parse_dt(since), tz).date().isoformat()}")
            for pk, since in rows
        ]

    return _grant_in_batches(ctx, campaign, candidates)


def _referral(ctx: Context, campaign: Campaign) -> dict:
    """Referrer and referee, once the referee's first purchase has cleared the return window
    (released) and was not returned; never for a self-referral; at most `referral_limit`
    referrer bonuses per referrer."""
    first = Purchase.objects.filter(member=OuterRef("pk")).order_by("occurred_at", "pk")
    referees = (
        _not_awarded(audience(campaign), campaign, "referral")
        .filter(referred_by__isnull=False, enrolled_at__gte=campaign.starts_at)
        .exclude(referred_by=F("pk"))
        .filter(referred_by__status=Member.Status.ACTIVE)
        .annotate(
            first_released=Subquery(first.values("released_at")[:1]),
            first_returned=Subquery(first.values("returned_amount")[:1]),
        )
        .filter(first_released__isnull=False, first_returned=0)
    )
    if campaign.ends_at:
        referees = referees.filter(enrolled_at__lt=campaign.ends_at)
    summary = {"given": 0, "points": 0, "held_out": 0, "over_budget": 0, "over_limit": 0}
    last = 0
    while True:
        batch = list(
            referees.filter(pk__gt=last)
            .order_by("pk")
            .values_list("pk", "referred_by_id")[: ctx.batch_size]
        )
        if not batch:
            return summary
        last = batch[-1][0]
        with batch_transaction(ctx):
            ids = set(ledger.lock_members(sorted({m for pair in batch for m in pair})))
            pairs = {(referee, f"referee:{referee}") for referee, _r in batch}
            done = set(
                CampaignAward.objects.filter(campaign=campaign, member_id__in=ids)
                .filter(Q(occasion="referral") | Q(occasion__in=[o for _m, o in pairs]))
                .values_list("member_id", "occasion")
            )
            counts = dict(
                CampaignAward.objects.filter(
                    campaign=campaign, occasion__startswith="referee:", is_held_out=False
                )
                .filter(member_id__in=[r for _e, r in batch])
                .values("member_id")
                .annotate(n=Count("pk"))
                .values_list("member_id", "n")
            )
            due = []
            for referee, referrer in batch:
                if referee not in ids or referrer not in ids or (referee, "referral") in done:
                    continue
                due.append((referee, "referral"))
                occasion = f"referee:{referee}"
                if (referrer, occasion) in done:
                    continue
                if campaign.referral_limit is not None and counts.get(referrer, 0) >= (
                    campaign.referral_limit
                ):
                    summary["over_limit"] += 1
                    continue
                counts[referrer] = counts.get(referrer, 0) + 1
                due.append((referrer, occasion))
            for key, value in _grant(ctx.program, campaign, due, now=ctx.now).items():
                summary[key] += value


_GRANTERS = {
    Campaign.Trigger.WELCOME: _welcome,
    Campaign.Trigger.BIRTHDAY: _birthday,
    Campaign.Trigger.REFERRAL: _referral,
    Campaign.Trigger.REACTIVATION: _reactivation,
}


def grant_lifecycle_bonuses(ctx: Context) -> dict:
    """The nightly job: every running lifecycle campaign of the program gives the bonuses now
    due. Idempotent (one award per member and occasion). Also moves campaign statuses with
    time: scheduled ones whose start has come become active, those past their end ended."""
    program = ctx.program
    summary = {"statuses": update_campaign_statuses(program, now=ctx.now)}
    for trigger, grant in _GRANTERS.items():
        for campaign in _running(program, trigger, ctx.now):
            summary[f"{campaign.pk}:{trigger}"] = grant(ctx, campaign)
    return summary


def update_campaign_statuses(program: Program, *, now: datetime) -> int:
    """Scheduled campaigns that have started become active; scheduled, active or paused ones
    past their end become ended. Saved one by one (few rows) so the program's version moves."""
    changed = 0
    moving = Campaign.objects.filter(program=program).filter(
        Q(status=Campaign.Status.SCHEDULED, starts_at__lte=now)
        | Q(status__in=(*Campaign.RUNNING, Campaign.Status.PAUSED), ends_at__lte=now)
    )
    for campaign in moving:
        ended = campaign.ends_at is not None and campaign.ends_at <= now
        campaign.status = Campaign.Status.ENDED if ended else Campaign.Status.ACTIVE
        campaign.save(update_fields=["status", "updated_at"])
        changed += 1
    return changed


def grant_welcome(member: Member, *, now: datetime) -> None:
    """Welcome bonuses at enrolment, in the enrolment's transaction (the new member's row is
    not visible to anyone else yet). Campaigns that wait for the first purchase are left to
    the nightly job."""
    program = member.program
    for campaign in _running(program, Campaign.Trigger.WELCOME, now):
        if campaign.welcome_after_first_purchase:
            continue
        if not audience(campaign).filter(pk=member.pk).exists():
            continue
        _grant(program, campaign, [(member.pk, "welcome")], now=now)
