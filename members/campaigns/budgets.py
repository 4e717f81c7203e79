"""Race-safe campaign budgets.

Each capped campaign has one `CampaignBudgetUsage` row per scope (overall, the current
day/week/month in the program's time zone, optionally per store). A campaign applied to a
purchase consumes its points from every scope in one conditional upsert (`spent + n <= cap`,
evaluated on the latest row under its lock), so two purchases at the same instant cannot
overspend; it gives its whole bonus or nothing. A lifecycle campaign takes the room left for a
whole batch of bonuses at once (`take_budget`), the scope rows locked first in scope order.
"""

from datetime import date

from django.db import connection

from loyalty.models import Campaign, CampaignBudgetUsage
from loyalty.selectors import CampaignBudget

U = CampaignBudgetUsage._meta.db_table


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


# Lifecycle bonuses, a batch at a time ------------------------------------------------------------

_LOCK_SCOPES_SQL = (
    f"INSERT INTO {U} (campaign_id, scope, spent_points, cap_points) VALUES {{values}} "  # noqa: S608  # nosec B608  # table name from model metadata; {values}/{marks} are %s placeholders
    "ON CONFLICT (campaign_id, scope) DO UPDATE SET cap_points = EXCLUDED.cap_points "
    "RETURNING scope, spent_points, cap_points"
)
_TAKE_SQL = (
    f"UPDATE {U} SET spent_points = spent_points + %s "  # noqa: S608  # nosec B608  # table name from model metadata; {values}/{marks} are %s placeholders
    "WHERE campaign_id = %s AND scope IN ({marks})"
)


def take_budget(campaign: Campaign, points_each: int, count: int, local_day: date) -> int:
    """How many of `count` bonuses of `points_each` the campaign's budget still allows, taken
    from every scope at once. The scope rows are created or locked first (in scope order), so
    two batches cannot overspend."""
    total, per_period = campaign.budget_caps(campaign.program.point_cost_amount)
    if total is None and per_period is None:
        return count
    budget = CampaignBudget(total, campaign.budget_period, per_period, per_store=False)
    scopes = budget_scopes(budget, None, local_day)
    values = ", ".join(["(%s, %s, 0, %s)"] * len(scopes))
    params = []
    for scope, cap in scopes:
        params += [campaign.pk, scope, cap]
    with connection.cursor() as cursor:
        cursor.execute(_LOCK_SCOPES_SQL.format(values=values), params)
        rows = cursor.fetchall()
        room = min((cap - spent) // points_each for _scope, spent, cap in rows)
        granted = max(0, min(count, room))
        if granted:
            marks = ", ".join(["%s"] * len(scopes))
            cursor.execute(
                _TAKE_SQL.format(marks=marks),
                [granted * points_each, campaign.pk, *(s for s, _cap in scopes)],
            )
    return granted
