"""What campaigns cost and bring: the points and money they give (net of returns), their
uplift (treated members against the hold-out group) and results, the audience preview before
activation, and those as (label, value) rows for the campaign's admin page.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import connection
from django.db.models import Count, F, Q, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from loyalty.models import Campaign, Program
from loyalty.sql import dt

from ..models import CampaignAward, Purchase
from .audience import audience

CENT = Decimal("0.01")


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


# Reports on the campaign's admin page (members/admin.py) -----------------------------------


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
