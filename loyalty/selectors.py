"""Reads of the program core that need thought."""

import time

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


def tier_bonus(tier: Tier | None) -> rules.TierBonus | None:
    if tier is None:
        return None
    return rules.TierBonus(name=tier.name, multiplier=tier.earn_multiplier)


def entry_tier(program: Program) -> Tier | None:
    """The tier a new member starts in: the lowest rank."""
    return Tier.objects.filter(program=program).order_by("rank").first()
