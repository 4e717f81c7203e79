"""Tier policy: windows, grace, upgrades on a purchase and tiers set by staff. The nightly
requalification that applies it to every member is `members.tiers.job`.

The policy (which window, which tier a value supports, when a tier is reviewed, what a review
decides) is pure functions over plain data at the top of this module, so it can be tested by
tables; the database work follows.

Definitions (docs/tiers-and-jobs.md):

- The *qualifying value* of a member is their qualifying spend (purchase amounts net of
  returns) or qualifying points (points earned on purchases net of returns) over the program's
  window, in the program's time zone, by the date of the purchase. Never the spendable balance:
  redeeming does not cost a tier.
- Window as of local date D: rolling N months = D - N months + 1 day .. D; calendar year =
  1 January of D's year .. D.
- A value supports the highest tier whose qualifying threshold it reaches; for the member's
  current tier, its keep threshold (lower, when set) is enough.
- Upgrades happen at once, on the purchase that crosses a threshold (or at the next nightly run
  for anything a purchase could not see). Downgrades happen only in the nightly review, once the
  grace has passed: a tier earned (or kept at a review) on date D is kept until `next_review`;
  the review on night T evaluates the window as of T - 1 and moves the member one tier down or
  straight to the supported tier, by the program's policy, or renews the tier.
- A tier set by staff is kept until its end date; the next night after it the member goes to the
  tier their value supports.
"""

import calendar
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.utils import timezone

from loyalty.models import Program, Tier
from loyalty.selectors import TierInfo, program_tiers
from loyalty.sql import dt, parse_dt

from .. import errors
from ..models import Member, Purchase, TierChange

Reason = TierChange.Reason
ZERO = Decimal(0)

# Policy -----------------------------------------------------------------------------------------


def add_months(day: date, months: int) -> date:
    """`day` moved by `months` calendar months, clamped to the end of shorter months."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def qualification_window(program: Program, as_of: date) -> tuple[date, date]:
    """First and last local dates (inclusive) of the window that ends on `as_of`."""
    if program.tier_window == Program.TierWindow.CALENDAR_YEAR:
        return date(as_of.year, 1, 1), as_of
    return add_months(as_of, -program.tier_window_months) + timedelta(days=1), as_of


def local_midnight(program: Program, day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=program.tzinfo)


def window_bounds(program: Program, as_of: date) -> tuple[datetime, datetime]:
    """The window as aware datetimes: [start, end)."""
    first, last = qualification_window(program, as_of)
    return local_midnight(program, first), local_midnight(program, last + timedelta(days=1))


def next_review(program: Program, earned_on: date, *, after: date) -> date:
    """The date a tier earned or kept on `earned_on` is next reviewed (never before the day
    after `after`)."""
    grace = program.tier_grace_periods
    if program.tier_window == Program.TierWindow.CALENDAR_YEAR:
        review = date(earned_on.year + grace + 1, 1, 1)
    else:
        review = add_months(earned_on, program.tier_window_months * grace)
    return max(review, after + timedelta(days=1))


def supported_tier(
    tiers: Sequence[TierInfo], value: Decimal, current: TierInfo | None = None
) -> TierInfo | None:
    """The best tier `value` supports: the highest reached qualifying threshold, or the current
    tier if `value` reaches its keep threshold (whichever ranks higher)."""
    best = None
    for tier in tiers:  # lowest rank first
        bar = tier.retain_threshold if current and tier.pk == current.pk else tier.qualify_threshold
        if value >= bar:
            best = tier
    return best


def tier_below(tiers: Sequence[TierInfo], tier: TierInfo) -> TierInfo | None:
    lower = [t for t in tiers if t.rank < tier.rank]
    return lower[-1] if lower else None


def tier_by_pk(tiers: Sequence[TierInfo], pk: int | None) -> TierInfo | None:
    return next((t for t in tiers if t.pk == pk), None)


@dataclass(frozen=True, slots=True)
class Decision:
    """What a nightly review does to one member."""

    tier: TierInfo | None  # the tier after the review
    reason: str | None  # a TierChange reason when the tier changes; None for a renewal
    review_on: date | None  # the next review
    clear_manual: bool = False


def decide(
    program: Program,
    tiers: Sequence[TierInfo],
    current: TierInfo | None,
    value: Decimal,
    *,
    review_on: date | None,
    manual_until: date | None,
    night: date,
) -> Decision | None:
    """The nightly review of one member on the night of local date `night`, with `value` the
    qualifying value over the window as of the day before. None: nothing to do."""
    as_of = night - timedelta(days=1)
    supported = supported_tier(tiers, value, current)
    if supported is None:
        return None

    def review_after(tier):
        return None if tier.pk == tiers[0].pk else next_review(program, as_of, after=night)

    if current is None or supported.rank > current.rank:
        reason = Reason.REQUALIFICATION
        return Decision(supported, reason, review_after(supported), clear_manual=True)
    if manual_until is not None:
        if manual_until >= night:
            return None  # set by staff, still running
        if supported.pk != current.pk:
            return Decision(supported, Reason.MANUAL_ENDED, review_after(supported), True)
        return Decision(current, None, review_after(current), clear_manual=True)
    if review_on is None or review_on > night:
        return None  # still within its grace
    if supported.rank < current.rank:
        if program.tier_downgrade_policy == Program.TierDowngrade.ONE_STEP:
            target = tier_below(tiers, current)
        else:
            target = supported
        return Decision(target, Reason.DOWNGRADE, review_after(target))
    return Decision(current, None, review_after(current))


# Qualifying values ------------------------------------------------------------------------------


def value_expression(program: Program) -> str:
    """The SQL expression of a purchase's qualifying value (purchases aliased `p`)."""
    if program.tier_metric == Program.TierMetric.POINTS:
        return "(p.points_earned - p.points_reversed)"
    return "(p.total_amount - p.returned_amount)"


def window_value(program: Program, member_id: int, as_of: date) -> tuple[Decimal, datetime]:
    """The member's exact qualifying value over the window as of `as_of`, and the time of the
    oldest purchase it counts (None without any). One query."""
    start, end = window_bounds(program, as_of)
    sql = (
        f"SELECT COALESCE(SUM({value_expression(program)}), 0), MIN(p.occurred_at) "  # noqa: S608  # nosec B608  # table name and a constant expression; values are parameters
        f"FROM {Purchase._meta.db_table} p "
        "WHERE p.member_id = %s AND p.occurred_at >= %s AND p.occurred_at < %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [member_id, dt(start), dt(end)])
        value, oldest = cursor.fetchone()
    return Decimal(str(value or 0)).quantize(Decimal("0.01")), parse_dt(oldest)


def qualifying_value(program: Program, member_id: int, as_of: date) -> Decimal:
    """The member's exact qualifying value over the window as of `as_of` (one query)."""
    return window_value(program, member_id, as_of)[0]


def purchase_contribution(program: Program, amount: Decimal, points: int) -> Decimal:
    if program.tier_metric == Program.TierMetric.POINTS:
        return Decimal(points)
    return amount


# Upgrade on a purchase --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Upgrade:
    from_tier: TierInfo | None
    to_tier: TierInfo
    value: Decimal
    review_on: date | None


def upgrade_for_purchase(
    program: Program,
    member: Member,
    *,
    contribution: Decimal,
    occurred_at: datetime,
    now: datetime,
) -> Upgrade | None:
    """The upgrade that a purchase (not yet written) brings the locked `member`, if any.

    Costs no query unless the member's qualifying bound says the purchase may cross the next
    threshold; then one query reads the exact value.
    """
    tiers = program_tiers(program)
    if not tiers:
        return None
    current = tier_by_pk(tiers, member.tier_id)
    higher = [t for t in tiers if current is None or t.rank > current.rank]
    if not higher:
        return None
    if member.qualifying_bound + contribution < min(t.qualify_threshold for t in higher):
        return None
    today = timezone.localtime(now, program.tzinfo).date()
    start, end = window_bounds(program, today)
    value = qualifying_value(program, member.pk, today)
    if start <= occurred_at < end:
        value += contribution
    best = supported_tier(tiers, value, current)
    if best is None or (current is not None and best.rank <= current.rank):
        return None
    review_on = None if best.pk == tiers[0].pk else next_review(program, today, after=today)
    return Upgrade(current, best, value, review_on)


def apply_upgrade(member: Member, upgrade: Upgrade, *, purchase, now: datetime) -> None:
    """Write an upgrade decided by `upgrade_for_purchase` (the member is locked)."""
    Member.objects.filter(pk=member.pk).update(
        tier_id=upgrade.to_tier.pk, tier_review_on=upgrade.review_on, tier_manual_until=None
    )
    TierChange.objects.create(
        program_id=member.program_id,
        member_id=member.pk,
        from_tier_id=upgrade.from_tier.pk if upgrade.from_tier else None,
        to_tier_id=upgrade.to_tier.pk,
        reason=Reason.PURCHASE,
        qualifying_value=upgrade.value,
        purchase=purchase,
        created_at=now,
    )


# Tiers set by staff -----------------------------------------------------------------------------


def set_manual_tier(*, member: Member, tier: Tier, until: date, reason: str, staff_user):
    """Put the member in `tier` until `until` (inclusive), whatever their value says; recorded
    with the staff user and the reason. Returns the TierChange."""
    reason = (reason or "").strip()
    now = timezone.now()
    program = member.program
    if tier is None or tier.program_id != member.program_id:
        raise errors.InvalidManualTier(field="tier")
    if not reason:
        raise errors.InvalidManualTier(field="reason")
    if until is None or until < timezone.localtime(now, program.tzinfo).date():
        raise errors.InvalidManualTier(field="until")
    with transaction.atomic():
        locked = Member.objects.select_for_update().get(pk=member.pk)
        change = TierChange.objects.create(
            program_id=locked.program_id,
            member_id=locked.pk,
            from_tier_id=locked.tier_id,
            to_tier_id=tier.pk,
            reason=Reason.MANUAL,
            note=reason[:200],
            staff_user=staff_user,
            created_at=now,
        )
        Member.objects.filter(pk=locked.pk).update(
            tier_id=tier.pk, tier_manual_until=until, tier_review_on=None
        )
    member.tier = tier
    member.tier_manual_until = until
    member.tier_review_on = None
    return change
