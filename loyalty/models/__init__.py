"""The program core: programs, their stores and API keys, tiers, earning rules, costs, job runs,
segments and campaigns.

Django finds the app's models through this package, so every model is imported here; the
names other modules import from ``loyalty.models`` stay importable at that path.
"""

from .campaigns import Campaign, CampaignBudgetUsage, Segment, points_cap
from .costs import ProgramCost
from .jobs import IdempotencyRecord, JobRun, JobRunQuerySet
from .program import (
    Program,
    Store,
    StoreAPIKey,
    _touch_program,
    currency_validator,
    validate_time_zone,
)
from .rules import EarningRule
from .tiers import Tier

__all__ = [
    "Campaign",
    "CampaignBudgetUsage",
    "EarningRule",
    "IdempotencyRecord",
    "JobRun",
    "JobRunQuerySet",
    "Program",
    "ProgramCost",
    "Segment",
    "Store",
    "StoreAPIKey",
    "Tier",
    "_touch_program",
    "currency_validator",
    "points_cap",
    "validate_time_zone",
]
