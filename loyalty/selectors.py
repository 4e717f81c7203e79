"""Reads of the program core that need thought."""

import time
from dataclasses import dataclass
from decimal import Decimal

from . import rules
from .models import EarningRule, Program, Tier

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
    """A tier as plain data, for the tier policy (members/tiers.py)."""

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
