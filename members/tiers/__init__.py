"""Tiers: the qualification policy (`policy`: windows, grace, upgrades on a purchase, tiers set
by staff) and the nightly requalification that applies it to every member (`job`)."""

from .job import requalify_tiers
from .policy import (
    Decision,
    Upgrade,
    add_months,
    apply_upgrade,
    decide,
    local_midnight,
    next_review,
    purchase_contribution,
    qualification_window,
    qualifying_value,
    set_manual_tier,
    supported_tier,
    tier_below,
    tier_by_pk,
    upgrade_for_purchase,
    value_expression,
    window_bounds,
    window_value,
)

__all__ = [
    "Decision",
    "Upgrade",
    "add_months",
    "apply_upgrade",
    "decide",
    "local_midnight",
    "next_review",
    "purchase_contribution",
    "qualification_window",
    "qualifying_value",
    "requalify_tiers",
    "set_manual_tier",
    "supported_tier",
    "tier_below",
    "tier_by_pk",
    "upgrade_for_purchase",
    "value_expression",
    "window_bounds",
    "window_value",
]
