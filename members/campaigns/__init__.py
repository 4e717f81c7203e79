"""Campaigns on the members' side: who a campaign reaches (`audience`), its bonus on a purchase
(`apply`), its race-safe budgets (`budgets`), lifecycle bonuses (`lifecycle`: welcome,
birthday, referral, reactivation), segments (`segments`) and what a campaign costs and brings
(`reports`: costs, uplift, results, audience preview).

The Campaign and Segment models are in `loyalty.models`; how campaigns combine is
`loyalty.rules.add_campaigns`.
"""

from .apply import apply_to_purchase, quote_campaigns, record_awards
from .audience import audience, campaign_facts, member_campaigns
from .budgets import budget_scopes, consume_budget, period_scope, take_budget
from .lifecycle import grant_lifecycle_bonuses, grant_welcome, update_campaign_statuses
from .reports import (
    Comparison,
    Preview,
    Results,
    Uplift,
    audience_preview,
    audience_report,
    campaign_costs,
    campaign_points,
    campaign_results,
    results_report,
    uplift,
)
from .segments import refresh_now, refresh_segment, refresh_segments

__all__ = [
    "Comparison",
    "Preview",
    "Results",
    "Uplift",
    "apply_to_purchase",
    "audience",
    "audience_preview",
    "audience_report",
    "budget_scopes",
    "campaign_costs",
    "campaign_facts",
    "campaign_points",
    "campaign_results",
    "consume_budget",
    "grant_lifecycle_bonuses",
    "grant_welcome",
    "member_campaigns",
    "period_scope",
    "quote_campaigns",
    "record_awards",
    "refresh_now",
    "refresh_segment",
    "refresh_segments",
    "results_report",
    "take_budget",
    "update_campaign_statuses",
    "uplift",
]
