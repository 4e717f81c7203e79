"""The KPIs of DOMAIN.md per program and period (docs/kpis.md).

- `definitions`: the formula of each figure from its facts (`assemble`), ROI, cost allocation;
  pure Python, no query.
- `reads`: the grouped reads, one SQL text per family of figures, grouped by source: `sales`
  (purchase sums per store), `activity` (active members, retention, repeat buyers, cohorts),
  `members` (enrolments, members per tier), `ledger` (points by kind), `liability`
  (outstanding points by month of expiry), `costs` (the cost sources).
- `engine`: the one engine that runs the reads over a set of periods and turns their rows into
  each period's facts.
- `postgres`: how the reads run on PostgreSQL (settings, connections at once, statistics).
"""

from .definitions import (
    CohortCell,
    Figure,
    LiabilityRow,
    PeriodFacts,
    PeriodResult,
    assemble,
    money,
    month_index,
    shifted_dependants,
)
from .engine import compute_periods, grouped_facts, grouped_facts_of_kinds
from .postgres import ensure_period_statistics
from .reads.costs import COST_SOURCES
from .reads.members import first_activity_day

__all__ = [
    "COST_SOURCES",
    "CohortCell",
    "Figure",
    "LiabilityRow",
    "PeriodFacts",
    "PeriodResult",
    "assemble",
    "compute_periods",
    "ensure_period_statistics",
    "first_activity_day",
    "grouped_facts",
    "grouped_facts_of_kinds",
    "money",
    "month_index",
    "shifted_dependants",
]
