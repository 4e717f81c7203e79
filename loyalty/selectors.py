"""Reads of the program core that need thought."""

import time
from dataclasses import dataclass, field
from decimal import Decimal

from . import rules
from .models import Campaign, EarningRule, Program, Tier

# The earning grid of each program, per process, keyed by the program's `updated_at`, which
# every save or delete of one of its earning rules moves forward (EarningRule.save): a request
# that loads its program fresh (the API key's query does) never sees a stale grid.
_RULES_CACHE: dict[int, tuple[float, object, rules.ProgramRules]] = {}
RULES_CACHE_SECONDS = 300
RULE_FIELDS = (
    "id",
    "name",
    "kind",
    "value",
    "channel",
    "store_id",
    "category",
    "sku",
    "priority",
    "valid_from",
    "valid_until",
)


def program_rules(program: Program) -> rules.ProgramRules:
    """The program's earning grid as plain data for the rules engine (at most one query)."""
    now = time.monotonic()
    hit = _RULES_CACHE.get(program.pk)
    if hit and hit[0] > now and hit[1] == program.updated_at:
        return hit[2]
    rows = EarningRule.objects.filter(program=program, is_active=True).values_list(*RULE_FIELDS)
    grid = rules.ProgramRules(
        base_rate=program.base_earn_rate,
        rounding=program.rounding,
        rules=tuple(rules.Rule(*row) for row in rows),
    )
    _RULES_CACHE[program.pk] = (now + RULES_CACHE_SECONDS, program.updated_at, grid)
    return grid


@dataclass(frozen=True, slots=True)
class TierInfo:
    """A tier as plain data, for the tier policy (members/tiers/policy.py)."""

    pk: int
    rank: int
    name: str
    qualify_threshold: Decimal
    retain_threshold: Decimal  # the bar to keep the tier (the qualify bar when none is set)
    earn_multiplier: Decimal


_TIERS_CACHE: dict[int, tuple[float, object, tuple[TierInfo, ...]]] = {}


def program_tiers(program: Program) -> tuple[TierInfo, ...]:
    """The program's tiers by rank, lowest first (at most one query; cached per process like
    the earning grid, keyed by the program's `updated_at`, which every tier change moves)."""
    now = time.monotonic()
    hit = _TIERS_CACHE.get(program.pk)
    if hit and hit[0] > now and hit[1] == program.updated_at:
        return hit[2]
    tiers = tuple(
        TierInfo(
            pk=t.pk,
            rank=t.rank,
            name=t.name,
            qualify_threshold=t.qualify_threshold,
            retain_threshold=(
                t.retain_threshold if t.retain_threshold is not None else t.qualify_threshold
            ),
            earn_multiplier=t.earn_multiplier,
        )
        for t in Tier.objects.filter(program=program).order_by("rank")
    )
    _TIERS_CACHE[program.pk] = (now + RULES_CACHE_SECONDS, program.updated_at, tiers)
    return tiers


def tier_bonus(tier: Tier | None) -> rules.TierBonus | None:
    if tier is None:
        return None
    return rules.TierBonus(name=tier.name, multiplier=tier.earn_multiplier)


def entry_tier(program: Program) -> Tier | None:
    """The tier a new member starts in: the lowest rank."""
    return Tier.objects.filter(program=program).order_by("rank").first()


@dataclass(frozen=True, slots=True)
class CampaignBudget:
    """A campaign's caps in points (money caps converted at the program's cost of a point)."""

    total: int | None  # overall cap; None = none
    period: str  # "" | "day" | "week" | "month"
    per_period: int | None  # cap per period; None = none
    per_store: bool  # each store has its own caps


@dataclass(frozen=True, slots=True)
class ProgramCampaigns:
    """The program's purchase campaigns that may run (scheduled or active), as plain data."""

    campaigns: tuple[rules.Campaign, ...] = ()
    budgets: dict[int, CampaignBudget] = field(default_factory=dict)  # by id, capped ones only

    def live(self, when) -> list[rules.Campaign]:
        """The campaigns whose dates contain `when` (an aware datetime)."""
        return [
            c
            for c in self.campaigns
            if c.starts_at <= when and (c.ends_at is None or when < c.ends_at)
        ]


_CAMPAIGNS_CACHE: dict[int, tuple[float, object, ProgramCampaigns]] = {}


def campaign_data(campaign: Campaign) -> rules.Campaign:
    """One campaign as plain data for the rules engine (tiers and stores prefetched)."""
    return rules.Campaign(
        id=campaign.pk,
        name=campaign.name,
        effect=campaign.effect,
        value=campaign.effect_value,
        starts_at=campaign.starts_at,
        ends_at=campaign.ends_at,
        is_exclusive=campaign.is_exclusive,
        priority=campaign.priority,
        target_categories=frozenset(campaign.target_category_list),
        target_skus=frozenset(campaign.target_sku_list),
        tier_ids=frozenset(t.pk for t in campaign.tiers.all()),
        store_ids=frozenset(s.pk for s in campaign.stores.all()),
        channels=frozenset(campaign.channels or ()),
        weekdays=frozenset(int(d) for d in campaign.weekdays or ()),
        hour_from=campaign.hour_from,
        hour_until=campaign.hour_until,
        min_basket=campaign.min_basket_amount,
        basket_categories=frozenset(campaign.basket_category_list),
        basket_skus=frozenset(campaign.basket_sku_list),
        purchase_number=campaign.purchase_number,
        enrolled_since=campaign.enrolled_since,
        enrolled_before=campaign.enrolled_before,
        segment_id=campaign.segment_id,
        holdout_percent=campaign.holdout_percent,
    )


def program_campaigns(program: Program) -> ProgramCampaigns:
    """The program's running purchase campaigns as plain data (three queries on a miss; cached
    per process like the earning grid, keyed by the program's `updated_at`, which every save of
    a campaign moves forward)."""
    now = time.monotonic()
    hit = _CAMPAIGNS_CACHE.get(program.pk)
    if hit and hit[0] > now and hit[1] == program.updated_at:
        return hit[2]
    rows = (
        Campaign.objects.filter(
            program=program, trigger=Campaign.Trigger.PURCHASE, status__in=Campaign.RUNNING
        )
        .prefetch_related("tiers", "stores")
        .order_by("pk")
    )
    campaigns, budgets = [], {}
    for campaign in rows:
        campaigns.append(campaign_data(campaign))
        total, per_period = campaign.budget_caps(program.point_cost_amount)
        if total is not None or per_period is not None:
            budgets[campaign.pk] = CampaignBudget(
                total, campaign.budget_period, per_period, campaign.budget_per_store
            )
    data = ProgramCampaigns(tuple(campaigns), budgets)
    _CAMPAIGNS_CACHE[program.pk] = (now + RULES_CACHE_SECONDS, program.updated_at, data)
    return data
