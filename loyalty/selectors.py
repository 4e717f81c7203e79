"""Reads of the program core that need thought."""

from . import rules
from .models import EarningRule, Program, Tier


def program_rules(program: Program) -> rules.ProgramRules:
    """The program's earning grid as plain data for the rules engine (one query)."""
    rows = EarningRule.objects.filter(program=program, is_active=True).values_list(
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
    return rules.ProgramRules(
        base_rate=program.base_earn_rate,
        rounding=program.rounding,
        rules=tuple(rules.Rule(*row) for row in rows),
    )


def tier_bonus(tier: Tier | None) -> rules.TierBonus | None:
    if tier is None:
        return None
    return rules.TierBonus(name=tier.name, multiplier=tier.earn_multiplier)


def entry_tier(program: Program) -> Tier | None:
    """The tier a new member starts in: the lowest rank."""
    return Tier.objects.filter(program=program).order_by("rank").first()
