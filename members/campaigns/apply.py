"""Campaigns on purchases: their lines added to a purchase's (or a quote's) earning, their
budgets consumed, and the record of who was reached.

How campaigns combine is defined in loyalty/rules.py (`add_campaigns`); this module feeds it
and applies its result inside the purchase's transaction. When a budget refuses an applied
campaign, the earning is recomputed without it (another campaign may then apply). Every
campaign that reached the member is a `CampaignAward` row (points given, or 0 for a member of
the hold-out group), the population of the uplift measure.
"""

import dataclasses
from datetime import datetime

from django.utils.translation import gettext as _

from loyalty import rules
from loyalty.models import Program, Store
from loyalty.selectors import program_campaigns
from loyalty.sql import insert

from ..models import CampaignAward, Member, Purchase
from .audience import campaign_facts
from .budgets import budget_scopes, consume_budget

# Applying campaigns ---------------------------------------------------------------------------


def _notes(earning: rules.Earning) -> rules.Earning:
    """The earning with each campaign item explained in the active language."""
    results = {r.campaign_id: r for r in earning.campaigns}
    skipped_by = {}
    for r in earning.campaigns:
        if r.status == rules.NOT_COMBINED:
            skipped_by.setdefault(r.winner_id, []).append(r.name)
    items = []
    for item in earning.items:
        result = results.get(item.rule_id) if item.code.startswith("campaign") else None
        if result is None:
            items.append(item)
            continue
        values = {"priority": result.priority}
        if result.status == rules.APPLIED and result.is_exclusive:
            note = _("Exclusive campaign, first by priority (%(priority)s): applies alone.")
            if result.campaign_id in skipped_by:
                note += " " + _("Not combined: %(names)s.")
                values["names"] = ", ".join(f"«{n}»" for n in skipped_by[result.campaign_id])
        elif result.status == rules.APPLIED:
            note = _("Combinable campaign (priority %(priority)s).")
        elif result.status == rules.BUDGET_REACHED:
            note = _("The campaign's budget is reached.")
        else:
            winner = results[result.winner_id]
            values.update(winner=winner.name, winner_priority=winner.priority)
            if winner.is_exclusive:
                note = _(
                    "Not combined: the exclusive campaign «%(winner)s» comes first "
                    "(priority %(winner_priority)s against %(priority)s)."
                )
            else:
                note = _(
                    "Exclusive, so not combined with «%(winner)s», which comes first "
                    "(priority %(winner_priority)s against %(priority)s)."
                )
        items.append(dataclasses.replace(item, note=note % values))
    return dataclasses.replace(earning, items=tuple(items))


def apply_to_purchase(
    *,
    program: Program,
    store: Store,
    member: Member,
    basket: rules.Basket,
    earning: rules.Earning,
    occurred_at: datetime,
) -> rules.Earning:
    """The purchase's earning with its campaigns' lines, their budgets consumed. Runs inside
    the purchase's transaction, with the member locked; a rollback gives the budget back."""
    data = program_campaigns(program)
    live = data.live(occurred_at)
    if not live:
        return earning
    facts = campaign_facts(program, member, occurred_at, live)
    local_day = facts.local_time.date()
    exhausted: set[int] = set()
    consumed: set[int] = set()
    while True:
        result = rules.add_campaigns(
            earning, basket, live, facts, program.rounding, frozenset(exhausted)
        )
        refused = False
        # Stacking order: the first applied campaign decides the set, and once its budget is
        # taken it stays first, so what was consumed stays applied when the earning is redone.
        for r in result.campaigns:
            if r.status != rules.APPLIED or r.campaign_id in consumed:
                continue
            budget = data.budgets.get(r.campaign_id)
            if budget is None:
                continue
            scopes = budget_scopes(budget, store.pk, local_day)
            if consume_budget(r.campaign_id, scopes, r.points):
                consumed.add(r.campaign_id)
            else:
                exhausted.add(r.campaign_id)
                refused = True
                break
        if not refused:
            return _notes(result)


def quote_campaigns(
    *,
    program: Program,
    member: Member | None,
    basket: rules.Basket,
    earning: rules.Earning,
    occurred_at: datetime,
) -> rules.Earning:
    """The campaigns a quote shows: as a purchase would get them, without taking budget (a
    campaign whose budget runs out before the purchase is then not applied)."""
    if member is None:
        return earning
    live = program_campaigns(program).live(occurred_at)
    if not live:
        return earning
    facts = campaign_facts(program, member, occurred_at, live)
    return _notes(rules.add_campaigns(earning, basket, live, facts, program.rounding))


def record_awards(earning: rules.Earning, purchase: Purchase) -> None:
    """Record which campaigns reached the purchase's member: given (points) or held out (0),
    in one INSERT. Called after the purchase row is written, in its transaction."""
    rows = [
        CampaignAward(
            program_id=purchase.program_id,
            campaign_id=r.campaign_id,
            member_id=purchase.member_id,
            purchase=purchase,
            store_id=purchase.store_id,
            points=r.points if r.status == rules.APPLIED else 0,
            is_held_out=r.status == rules.HELD_OUT,
            occurred_at=purchase.occurred_at,
        )
        for r in earning.campaigns
        if r.status in (rules.APPLIED, rules.HELD_OUT)
    ]
    insert(rows)
