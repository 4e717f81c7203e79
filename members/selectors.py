"""Reads about one member that need thought: tier progress and the points that will expire.

`member_progress` is the one answer to "where do I stand": used by the POS lookup and by the
member portal. It costs two queries (the qualifying value, the recent credits).
"""

from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db import connection
from django.utils import timezone

from loyalty.models import Program
from loyalty.selectors import program_tiers
from loyalty.sql import dt, parse_dt

from . import errors, tiers
from .cards import normalize_card_number
from .models import Member, PointsEntry

EXPIRY_WARNING_DAYS = 30


def member_by_card(program: Program, card_number: str) -> Member:
    """The program's member with this card number (typed with spaces or dashes, or not), with
    their tier; MemberNotFound (404, field card_number) otherwise."""
    member = (
        Member.objects.select_related("tier")
        .filter(program=program, card_number=normalize_card_number(card_number))
        .first()
    )
    if member is None:
        raise errors.MemberNotFound(field="card_number")
    return member


def expiry_cutoff_day(night: date, months: int) -> date:
    """The first local date whose points (earned, or last activity) have not expired by the
    night of `night`. Points of date D expire on the night of add_months(D, months), which
    clamps to the end of shorter months (31 August + 6 months = 28 February): on such a month
    end the cutoff moves past every day that clamps to it."""
    cutoff = tiers.add_months(night, -months) + timedelta(days=1)
    while tiers.add_months(cutoff, months) <= night:
        cutoff += timedelta(days=1)
    return cutoff


def expiry_cutoff(program: Program, night: date) -> datetime:
    """Points earned (after-earning policy), or a last activity (inactivity policy), before
    this instant have expired by the night of `night`."""
    return tiers.local_midnight(program, expiry_cutoff_day(night, program.expiry_months))


# The credits to a member's available bucket earned since a cutoff (two parameters, both the
# cutoff), dated by when they were earned (a release by its purchase's date, in `earned_at`).
# Under first in, first out, what a member still holds is made of these. A credit is never
# effective before it was earned, so the condition on effective_at only narrows the index scan.
CREDITS_SINCE_SQL = (
    "e.bucket = 'available' AND e.points > 0 AND e.effective_at >= %s "
    "AND COALESCE(e.earned_at, e.effective_at) >= %s"
)


def expiry_schedule(member: Member, today: date) -> list[tuple[date, int]]:
    """Which of the member's available points expire on which date, soonest first.

    After-earning policy: first in, first out, so the balance is made of the newest credits;
    each keeps its earning date + N months. After-inactivity policy: the whole balance, M months
    after the last activity. One query at most.
    """
    program = member.program
    balance = member.points_available
    if balance <= 0 or program.expiry_policy == Program.ExpiryPolicy.NONE:
        return []
    months = program.expiry_months
    if program.expiry_policy == Program.ExpiryPolicy.AFTER_INACTIVITY:
        last = member.last_activity_at or member.enrolled_at
        last_day = timezone.localtime(last, program.tzinfo).date()
        return [(max(tiers.add_months(last_day, months), today), balance)]
    cutoff = expiry_cutoff(program, today)
    sql = (
        "SELECT COALESCE(e.earned_at, e.effective_at), e.points "  # noqa: S608  # nosec B608  # table name and a constant of this module; values are parameters
        f"FROM {PointsEntry._meta.db_table} e WHERE e.member_id = %s AND {CREDITS_SINCE_SQL}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [member.pk, dt(cutoff), dt(cutoff)])
        credits = cursor.fetchall()
    lots = []
    for earned, points in credits:
        lots.append((timezone.localtime(parse_dt(earned), program.tzinfo).date(), points))
    lots.sort(reverse=True)  # newest first: FIFO spends the oldest, so the newest remain
    left = balance
    schedule: dict[date, int] = {}
    for earned_on, points in lots:
        if left <= 0:
            break
        kept = min(points, left)
        when = tiers.add_months(earned_on, months)
        schedule[when] = schedule.get(when, 0) + kept
        left -= kept
    if left > 0:  # older than the window: expires at the next nightly run
        schedule[today] = schedule.get(today, 0) + left
    return sorted(schedule.items())


def member_progress(member: Member, now: datetime | None = None) -> dict:
    """Where the member stands: tier and perks, what the next tier needs and by when, what keeps
    the current tier, and which points expire when. JSON-ready."""
    program = member.program
    today = timezone.localtime(now or timezone.now(), program.tzinfo).date()
    all_tiers = program_tiers(program)
    current = tiers.tier_by_pk(all_tiers, member.tier_id)
    first, last = tiers.qualification_window(program, today)
    value, oldest = tiers.window_value(program, member.pk, today)
    calendar_year = program.tier_window == Program.TierWindow.CALENDAR_YEAR

    next_tier = None
    higher = [t for t in all_tiers if current is None or t.rank > current.rank]
    if higher:
        target = higher[0]
        if calendar_year:
            by = date(today.year, 12, 31)
        elif oldest is not None:
            # The value holds until the oldest purchase counted leaves the rolling window.
            oldest_day = timezone.localtime(oldest, program.tzinfo).date()
            by = tiers.add_months(oldest_day, program.tier_window_months) - timedelta(days=1)
            # Month-end clamping can make that a day or two early: take the last day whose
            # window still starts on or before the oldest purchase.
            while tiers.qualification_window(program, by + timedelta(days=1))[0] <= oldest_day:
                by += timedelta(days=1)
        else:
            by = None  # nothing counted yet: the whole amount, within any window
        next_tier = {
            "name": target.name,
            "threshold": str(target.qualify_threshold),
            "missing": str(max(Decimal(0), target.qualify_threshold - value)),
            "by": by.isoformat() if by else None,
        }

    keep = None
    if current is not None and all_tiers and current.pk != all_tiers[0].pk:
        keep = {
            "threshold": str(current.retain_threshold),
            "missing": str(max(Decimal(0), current.retain_threshold - value)),
            "review_on": member.tier_review_on.isoformat() if member.tier_review_on else None,
            "manual_until": (
                member.tier_manual_until.isoformat() if member.tier_manual_until else None
            ),
        }

    schedule = expiry_schedule(member, today)
    horizon = today + timedelta(days=EXPIRY_WARNING_DAYS)
    tier_row = member.tier if member.tier_id else None
    return {
        "metric": program.tier_metric,
        "window": {
            "kind": program.tier_window,
            "start": first.isoformat(),
            "end": last.isoformat(),
        },
        "qualifying_value": str(value),
        "tier": (
            {
                "name": current.name,
                "rank": current.rank,
                "earn_multiplier": str(current.earn_multiplier),
                "perks": tier_row.perk_list if tier_row else [],
            }
            if current
            else None
        ),
        "next_tier": next_tier,
        "keep": keep,
        "expiring": [{"date": d.isoformat(), "points": p} for d, p in schedule],
        "expiring_within_30_days": sum(p for d, p in schedule if d <= horizon),
    }
