"""Campaigns on purchases: the facts their conditions need, race-safe budgets, the record of
who was reached (treated or held out), and what campaigns cost.

How campaigns combine is defined in loyalty/rules.py (`add_campaigns`); this module feeds it
and applies its result inside the purchase's transaction:

- Facts that cost a query (the member's n-th purchase, their segments) are read only when a
  campaign running at the purchase's time asks for them. With no campaign running, a purchase
  makes no query here.
- Budgets: each capped campaign has one `CampaignBudgetUsage` row per scope (overall, the
  current day/week/month in the program's time zone, optionally per store). An applied
  campaign consumes its points from every scope in one conditional upsert
  (`spent + n <= cap`, evaluated on the latest row under its lock), so two purchases at the
  same instant cannot overspend. A campaign gives its whole bonus or nothing; when it cannot,
  the earning is recomputed without it (another campaign may then apply).
- Every campaign that reached the member is a `CampaignAward` row (points given, or 0 for a
  member of the hold-out group), the population of the uplift measure.
"""

import dataclasses
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.db import connection
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from loyalty import rules
from loyalty.models import Campaign, CampaignBudgetUsage, Program, Store
from loyalty.selectors import CampaignBudget, program_campaigns
from loyalty.sql import dt, insert

from .models import CampaignAward, Member, Purchase, SegmentMembership

CENT = Decimal("0.01")
U = CampaignBudgetUsage._meta.db_table


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


# Budgets ----------------------------------------------------------------------------------------


def period_scope(period: str, local_day) -> str:
    """The budget scope of a local date for a periodic cap: d:2026-11-23, w:2026-W48, m:2026-11."""
    if period == "day":
        return f"d:{local_day.isoformat()}"
    if period == "week":
        year, week, _day = local_day.isocalendar()
        return f"w:{year}-W{week:02d}"
    return f"m:{local_day:%Y-%m}"


def budget_scopes(budget: CampaignBudget, store_id: int | None, local_day) -> list[tuple[str, int]]:
    """(scope, cap in points) of every cap a campaign's award counts against, sorted (the
    order rows are locked in, the same for every purchase, so two cannot deadlock)."""
    suffix = f":s{store_id}" if budget.per_store else ""
    scopes = []
    if budget.total is not None:
        scopes.append((f"total{suffix}", budget.total))
    if budget.per_period is not None and budget.period:
        scopes.append((period_scope(budget.period, local_day) + suffix, budget.per_period))
    return sorted(scopes)


# The update applies only while the cap holds on the current row version; rows that refuse
# are not returned. Works on PostgreSQL and SQLite (>= 3.35).
_CONSUME_SQL = (
    f"INSERT INTO {U} (campaign_id, scope, spent_points, cap_points) VALUES {{values}} "  # noqa: S608  # nosec B608  # table name from model metadata; {values}/{marks} are %s placeholders
    "ON CONFLICT (campaign_id, scope) DO UPDATE SET "
    f"spent_points = {U}.spent_points + EXCLUDED.spent_points, cap_points = EXCLUDED.cap_points "
    f"WHERE {U}.spent_points + EXCLUDED.spent_points <= EXCLUDED.cap_points RETURNING scope"
)
_RELEASE_SQL = (
    f"UPDATE {U} SET spent_points = spent_points - %s "  # noqa: S608  # nosec B608  # table name from model metadata; {values}/{marks} are %s placeholders
    "WHERE campaign_id = %s AND scope IN ({marks})"
)


def consume_budget(campaign_id: int, scopes: list[tuple[str, int]], points: int) -> bool:
    """Take `points` from every scope of a campaign's budget, all or nothing; False when one
    would go over its cap. Race-safe: one upsert whose update applies only while
    `spent + points <= cap` on the current row (which it locks until the transaction ends).
    The caller is inside a transaction."""
    if not scopes:
        return True
    if any(points > cap for _scope, cap in scopes):
        return False
    values = ", ".join(["(%s, %s, %s, %s)"] * len(scopes))
    params = []
    for scope, cap in scopes:
        params += [campaign_id, scope, points, cap]
    with connection.cursor() as cursor:
        cursor.execute(_CONSUME_SQL.format(values=values), params)
        taken = [row[0] for row in cursor.fetchall()]
        if len(taken) == len(scopes):
            return True
        if taken:  # another scope was full: give back what was taken (rows locked by us)
            _release(cursor, campaign_id, taken, points)
    return False


def _release(cursor, campaign_id: int, scopes: list[str], points: int) -> None:
    marks = ", ".join(["%s"] * len(scopes))
    cursor.execute(_RELEASE_SQL.format(marks=marks), [points, campaign_id, *scopes])


# Applying campaigns ---------------------------------------------------------------------------


def _notes(earning: rules.Earning) -> rules.Earning:
    """The earning with each campaign item explained in the active language."""
    results = {r.campaign_id: r for r in earning.campaigns}
    skipped_by = {}
    for r in earning.campaigns:
        if r.status == rules.NOT_COMBINED:
            skipped_by.setdefault(r.winner_id, []).append(r.name)
    items = []
    for item in earning.items:
        result = results.get(item.rule_id) if item.code.startswith("campaign") else None
        if result is None:
            items.append(item)
            continue
        values = {"priority": result.priority}
        if result.status == rules.APPLIED and result.is_exclusive:
            note = _("Exclusive campaign, first by priority (%(priority)s): applies alone.")
            if result.campaign_id in skipped_by:
                note += " " + _("Not combined: %(names)s.")
                values["names"] = ", ".join(f"«{n}»" for n in skipped_by[result.campaign_id])
        elif result.status == rules.APPLIED:
            note = _("Combinable campaign (priority %(priority)s).")
        elif result.status == rules.BUDGET_REACHED:
            note = _("The campaign's budget is reached.")
        else:
            winner = results[result.winner_id]
            values.update(winner=winner.name, winner_priority=winner.priority)
            if winner.is_exclusive:
                note = _(
                    "Not combined: the exclusive campaign «%(winner)s» comes first "
                    "(priority %(winner_priority)s against %(priority)s)."
                )
            else:
                note = _(
                    "Exclusive, so not combined with «%(winner)s», which comes first "
                    "(priority %(winner_priority)s against %(priority)s)."
                )
        items.append(dataclasses.replace(item, note=note % values))
    return dataclasses.replace(earning, items=tuple(items))


def apply_to_purchase(
    *,
    program: Program,
    store: Store,
    member: Member,
    basket: rules.Basket,
    earning: rules.Earning,
    occurred_at: datetime,
) -> rules.Earning:
    """The purchase's earning with its campaigns' lines, their budgets consumed. Runs inside
    the purchase's transaction, with the member locked; a rollback gives the budget back."""
    data = program_campaigns(program)
    live = data.live(occurred_at)
    if not live:
        return earning
    facts = campaign_facts(program, member, occurred_at, live)
    local_day = facts.local_time.date()
    exhausted: set[int] = set()
    consumed: set[int] = set()
    while True:
        result = rules.add_campaigns(
            earning, basket, live, facts, program.rounding, frozenset(exhausted)
        )
        refused = False
        # Stacking order: the first applied campaign decides the set, and once its budget is
        # taken it stays first, so what was consumed stays applied when the earning is redone.
        for r in result.campaigns:
            if r.status != rules.APPLIED or r.campaign_id in consumed:
                continue
            budget = data.budgets.get(r.campaign_id)
            if budget is None:
                continue
            scopes = budget_scopes(budget, store.pk, local_day)
            if consume_budget(r.campaign_id, scopes, r.points):
                consumed.add(r.campaign_id)
            else:
                exhausted.add(r.campaign_id)
                refused = True
                break
        if not refused:
            return _notes(result)


def quote_campaigns(
    *,
    program: Program,
    member: Member | None,
    basket: rules.Basket,
    earning: rules.Earning,
    occurred_at: datetime,
) -> rules.Earning:
    """The campaigns a quote shows: as a purchase would get them, without taking budget (a
    campaign whose budget runs out before the purchase is then not applied)."""
    if member is None:
        return earning
    live = program_campaigns(program).live(occurred_at)
    if not live:
        return earning
    facts = campaign_facts(program, member, occurred_at, live)
    return _notes(rules.add_campaigns(earning, basket, live, facts, program.rounding))


def record_awards(earning: rules.Earning, purchase: Purchase) -> None:
    """Record which campaigns reached the purchase's member: given (points) or held out (0),
    in one INSERT. Called after the purchase row is written, in its transaction."""
    rows = [
        CampaignAward(
            program_id=purchase.program_id,
            campaign_id=r.campaign_id,
            member_id=purchase.member_id,
            purchase=purchase,
            store_id=purchase.store_id,
            points=r.points if r.status == rules.APPLIED else 0,
            is_held_out=r.status == rules.HELD_OUT,
            occurred_at=purchase.occurred_at,
        )
        for r in earning.campaigns
        if r.status in (rules.APPLIED, rules.HELD_OUT)
    ]
    insert(rows)


# Costs ------------------------------------------------------------------------------------------


def _net_points():
    """An award's points net of the share of its purchase that was returned (returns reverse
    campaign points with the rest of the purchase)."""
    return Sum(
        F("points") - F("points") * F("purchase__points_reversed") / F("purchase__points_earned"),
        default=0,
    )


def campaign_points(program: Program, start: datetime, end: datetime, campaign=None) -> int:
    """Campaign points given in [start, end): purchase bonuses net of returns, plus lifecycle
    bonuses."""
    awards = CampaignAward.objects.filter(
        program=program, occurred_at__gte=start, occurred_at__lt=end, points__gt=0
    )
    if campaign is not None:
        awards = awards.filter(campaign=campaign)
    on_purchases = awards.filter(purchase__isnull=False).aggregate(n=_net_points())["n"]
    lifecycle = awards.filter(purchase__isnull=True).aggregate(n=Sum("points", default=0))["n"]
    return int(on_purchases or 0) + int(lifecycle or 0)


def campaign_costs(program: Program, start: datetime, end: datetime) -> Decimal:
    """The money cost of the campaign points awarded in [start, end): points (net of returns)
    x the program's cost of one point, to the cent."""
    points = campaign_points(program, start, end)
    return (Decimal(points) * program.point_cost_amount).quantize(CENT)


# Uplift and results -----------------------------------------------------------------------------

Z_95 = Decimal("1.96")  # two-sided 95% normal quantile (Welch's t with large samples)

# Per member of the campaign's population (its awards, treated or held out): revenue net of
# returns and number of purchases in [start, end); summed per group with their squares, so the
# means and variances come from two rows whatever the number of members.
_GROUPS_SQL = f"""
SELECT a.is_held_out, COUNT(*),
       SUM(COALESCE(x.revenue, 0)), SUM(COALESCE(x.revenue, 0) * COALESCE(x.revenue, 0)),
       SUM(COALESCE(x.n, 0)), SUM(COALESCE(x.n, 0) * COALESCE(x.n, 0))
FROM (SELECT DISTINCT member_id, is_held_out FROM {CampaignAward._meta.db_table}
      WHERE campaign_id = %s) a
LEFT JOIN (
    SELECT member_id, SUM(total_amount - returned_amount) AS revenue, COUNT(*) AS n
    FROM {Purchase._meta.db_table}
    WHERE program_id = %s AND member_id IS NOT NULL AND occurred_at >= %s AND occurred_at < %s
    GROUP BY member_id
) x ON x.member_id = a.member_id
GROUP BY a.is_held_out
"""  # noqa: S608  # nosec B608  # table names from model metadata; values are parameters


@dataclass(frozen=True, slots=True)
class Comparison:
    """Treated against held out for one measure: means, their difference and its 95%
    confidence interval (Welch: the standard error of a difference of means with unequal
    variances, normal quantile); None where a group has fewer than two members."""

    treated_mean: Decimal
    held_out_mean: Decimal
    difference: Decimal
    low: Decimal | None
    high: Decimal | None

    @property
    def is_significant(self) -> bool:
        return self.low is not None and (self.low > 0 or self.high < 0)


@dataclass(frozen=True, slots=True)
class Uplift:
    start: datetime
    end: datetime
    treated: int
    held_out: int
    revenue: Comparison | None  # per member, in the program currency
    frequency: Comparison | None  # purchases per member
    incremental_revenue: Decimal | None  # revenue difference x treated members


def _moments(count: int, total, squares) -> tuple[Decimal, Decimal | None]:
    """Mean and sample variance from a count, a sum and a sum of squares."""
    total, squares = Decimal(str(total or 0)), Decimal(str(squares or 0))
    mean = total / count
    if count < 2:
        return mean, None
    return mean, max(Decimal(0), (squares - count * mean * mean) / (count - 1))


def _compare(treated: tuple, held: tuple, places: Decimal) -> Comparison:
    (n_t, mean_t, var_t), (n_c, mean_c, var_c) = treated, held
    difference = mean_t - mean_c
    low = high = None
    if var_t is not None and var_c is not None:
        margin = Z_95 * (var_t / n_t + var_c / n_c).sqrt()
        low, high = (difference - margin).quantize(places), (difference + margin).quantize(places)
    return Comparison(
        mean_t.quantize(places), mean_c.quantize(places), difference.quantize(places), low, high
    )


def uplift(campaign: Campaign, start: datetime, end: datetime) -> Uplift:
    """Revenue and purchase frequency per member in [start, end), the campaign's treated
    members against its held-out ones (both drawn at random, by hash, from the members the
    campaign reached), with 95% confidence intervals and the incremental revenue."""
    with connection.cursor() as cursor:
        cursor.execute(_GROUPS_SQL, [campaign.pk, campaign.program_id, dt(start), dt(end)])
        rows = {bool(r[0]): r[1:] for r in cursor.fetchall()}
    treated, held = rows.get(False), rows.get(True)
    n_t, n_c = (treated[0] if treated else 0), (held[0] if held else 0)
    if not n_t or not n_c:
        return Uplift(start, end, n_t, n_c, None, None, None)
    revenue = _compare(
        (n_t, *_moments(n_t, treated[1], treated[2])),
        (n_c, *_moments(n_c, held[1], held[2])),
        CENT,
    )
    frequency = _compare(
        (n_t, *_moments(n_t, treated[3], treated[4])),
        (n_c, *_moments(n_c, held[3], held[4])),
        Decimal("0.001"),
    )
    return Uplift(
        start, end, n_t, n_c, revenue, frequency, (revenue.difference * n_t).quantize(CENT)
    )


@dataclass(frozen=True, slots=True)
class Results:
    """What a campaign gave and what it brought: staff's results page."""

    points: int  # given, net of returns
    cost: Decimal  # points x the cost of one point
    members_reached: int  # members who got a bonus
    held_out: int  # members of the control group
    during: Uplift
    after: Uplift | None  # the `after_days` following the end, once it has ended
    roi_percent: Decimal | None  # (incremental revenue x gross margin - cost) / cost x 100


def campaign_results(
    campaign: Campaign, *, now: datetime | None = None, after_days: int = 30
) -> Results:
    """The campaign's results as of `now`: points and cost, reach, uplift during the campaign
    and in the `after_days` after it, and ROI (incremental revenue during the campaign)."""
    now = now or timezone.now()
    program = campaign.program
    end = min(campaign.ends_at or now, now)
    far = campaign.starts_at - timedelta(days=1), max(end, now) + timedelta(days=1)
    points = campaign_points(program, *far, campaign=campaign)
    cost = (Decimal(points) * program.point_cost_amount).quantize(CENT)
    reach = CampaignAward.objects.filter(campaign=campaign).aggregate(
        treated=Count("member", distinct=True, filter=Q(is_held_out=False, points__gt=0)),
        held=Count("member", distinct=True, filter=Q(is_held_out=True)),
    )
    during = uplift(campaign, campaign.starts_at, end)
    after = None
    if campaign.ends_at and campaign.ends_at < now:
        after = uplift(
            campaign, campaign.ends_at, min(now, campaign.ends_at + timedelta(days=after_days))
        )
    roi = None
    if cost > 0 and during.incremental_revenue is not None:
        margin = during.incremental_revenue * program.gross_margin_rate
        roi = ((margin - cost) / cost * 100).quantize(Decimal("0.1"))
    return Results(points, cost, reach["treated"], reach["held"], during, after, roi)


# Audience preview -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Preview:
    eligible_members: int  # active members its member conditions select
    period_start: datetime
    period_end: datetime
    purchases: int  # purchases of those members in the last comparable period that qualify
    buyers: int
    expected_points: int  # what it would have given then (net of the hold-out share, capped)
    expected_cost: Decimal


def audience_preview(campaign: Campaign, *, now: datetime | None = None) -> Preview:
    """Before activating: how many members the campaign may reach, and what it would have
    cost over the last period as long as it (before its start, or before now if it has
    started), computed in SQL. Purchase conditions on stores, channels and minimum basket are
    applied; those on days, hours and products are not, so the estimate is an upper bound.
    Lifecycle campaigns count their eligible members x the bonus."""
    now = now or timezone.now()
    program = campaign.program
    length = (campaign.ends_at - campaign.starts_at) if campaign.ends_at else timedelta(days=30)
    period_end = min(campaign.starts_at, now)
    period_start = period_end - length
    members = audience(campaign)
    eligible = members.count()
    share = 1 - campaign.holdout_percent / 100
    if campaign.trigger != campaign.Trigger.PURCHASE:
        stats = {"n": eligible, "buyers": 0}
        raw = Decimal(eligible) * campaign.effect_value
    else:
        purchases = Purchase.objects.filter(
            program=program,
            member__in=members,
            occurred_at__gte=period_start,
            occurred_at__lt=period_end,
        )
        store_ids = [s.pk for s in campaign.stores.all()]
        if store_ids:
            purchases = purchases.filter(store_id__in=store_ids)
        if campaign.channels:
            purchases = purchases.filter(store__channel__in=campaign.channels)
        if campaign.min_basket_amount is not None:
            purchases = purchases.filter(total_amount__gte=campaign.min_basket_amount)
        stats = purchases.aggregate(
            n=Count("pk"),
            buyers=Count("member", distinct=True),
            amount=Sum("total_amount", default=Decimal(0)),
            points=Sum("points_earned", default=0),
        )
        value = campaign.effect_value
        if campaign.effect == campaign.Effect.FIXED:
            raw = stats["n"] * value
        elif campaign.effect == campaign.Effect.PER_UNIT:
            raw = Decimal(str(stats["amount"])) * value
        else:
            raw = Decimal(stats["points"]) * (value - 1)
    expected = int(raw * share)
    total_cap, _per_period = campaign.budget_caps(program.point_cost_amount)
    if total_cap is not None:
        expected = min(expected, total_cap)
    return Preview(
        eligible,
        period_start,
        period_end,
        stats["n"],
        stats["buyers"],
        expected,
        (Decimal(expected) * program.point_cost_amount).quantize(CENT),
    )


# Reports on the campaign's admin page (registered from MembersConfig.ready) -------------------


def _comparison_text(c: Comparison | None, unit: str) -> str:
    if c is None:
        return _("not measurable: the campaign needs both treated and held-out members")
    text = _("%(treated)s treated against %(held)s held out: %(difference)s %(unit)s") % {
        "treated": c.treated_mean,
        "held": c.held_out_mean,
        "difference": f"{c.difference:+}",
        "unit": unit,
    }
    if c.low is None:
        return text + " " + _("(no interval: fewer than two members in a group)")
    return (
        text
        + " "
        + _("(95%% confidence interval %(low)s to %(high)s)") % {"low": c.low, "high": c.high}
    )


def _period(start: datetime, end: datetime) -> str:
    return _("%(start)s to %(end)s") % {
        "start": f"{start:%Y-%m-%d %H:%M}",
        "end": f"{end:%Y-%m-%d %H:%M}",
    }


def _uplift_rows(title: str, u: Uplift, currency: str) -> list[tuple[str, object]]:
    local = (timezone.localtime(u.start), timezone.localtime(u.end))
    return [
        (title, _period(*local)),
        (_("revenue per member"), _comparison_text(u.revenue, currency)),
        (_("purchases per member"), _comparison_text(u.frequency, "")),
    ]


def results_report(campaign: Campaign) -> list[tuple[str, object]]:
    """The campaign's results as (label, value) rows for staff."""
    program = campaign.program
    with timezone.override(program.tzinfo):
        r = campaign_results(campaign)
        rows = [
            (_("points given (net of returns)"), r.points),
            (_("cost"), f"{r.cost} {program.currency}"),
            (_("members reached"), r.members_reached),
            (_("members held out (control group)"), r.held_out),
            *_uplift_rows(_("during the campaign"), r.during, program.currency),
        ]
        if r.after is not None:
            rows += _uplift_rows(_("after the campaign"), r.after, program.currency)
    incremental = r.during.incremental_revenue
    rows.append(
        (
            _("incremental revenue"),
            _(
                "%(amount)s %(currency)s = revenue difference per member x %(members)s treated "
                "members (randomised hold-out group)"
            )
            % {"amount": incremental, "currency": program.currency, "members": r.during.treated}
            if incremental is not None
            else _("not measurable without a hold-out group"),
        )
    )
    rows.append(
        (
            _("ROI"),
            _("%(roi)s %% = (incremental revenue x gross margin - cost) / cost")
            % {"roi": r.roi_percent}
            if r.roi_percent is not None
            else _("not measurable (no cost or no uplift measure)"),
        )
    )
    return rows


def audience_report(campaign: Campaign) -> list[tuple[str, object]]:
    """The audience preview as (label, value) rows for staff."""
    program = campaign.program
    p = audience_preview(campaign)
    start = timezone.localtime(p.period_start, program.tzinfo)
    end = timezone.localtime(p.period_end, program.tzinfo)
    return [
        (_("eligible members"), p.eligible_members),
        (_("comparable period"), _period(start, end)),
        (_("qualifying purchases then"), p.purchases),
        (_("buyers then"), p.buyers),
        (
            _("expected cost"),
            _(
                "%(points)s points, %(amount)s %(currency)s (net of the hold-out share, within "
                "the budget; days, hours and products not applied: an upper bound)"
            )
            % {
                "points": p.expected_points,
                "amount": p.expected_cost,
                "currency": program.currency,
            },
        ),
    ]
