"""The nightly tier requalification: every member's tier reviewed by the policy
(`members.tiers.policy`), in batches of members selected in SQL (see `members.jobs` for how
the chain runs its jobs)."""

from datetime import date, timedelta
from decimal import Decimal

from django.db import connection

from loyalty.models import Program
from loyalty.selectors import program_tiers
from loyalty.sql import dt

from .. import ledger
from ..batches import Context, batch_transaction, fetch, ids_sql
from ..models import Member, Purchase, TierChange
from . import policy

BATCH_SIZE = 20000

M = Member._meta.db_table
P = Purchase._meta.db_table


def _values_sql(program: Program, where: str, purchases: str = "TRUE") -> str:
    """The review values of the members `where` selects. `purchases` restricts the joined
    purchases the same way (on p.member_id): PostgreSQL does not carry a range on m.id over to
    p.member_id, and without it every batch read the window's purchases of all members."""
    value = policy.value_expression(program)
    return f"""
SELECT m.id, m.tier_id, m.tier_review_on, m.tier_manual_until, m.qualifying_bound,
       COALESCE(SUM(CASE WHEN p.occurred_at >= %s AND p.occurred_at < %s THEN {value} END), 0),
       COALESCE(SUM(CASE WHEN p.occurred_at >= %s THEN {value} END), 0)
FROM {M} m LEFT JOIN {P} p ON p.member_id = m.id AND p.occurred_at >= %s AND {purchases}
WHERE {where}
GROUP BY m.id, m.tier_id, m.tier_review_on, m.tier_manual_until, m.qualifying_bound
ORDER BY m.id
"""  # noqa: S608  # nosec B608  # table names and SQL built in this module; ids inlined by int()


def _as_decimal(value) -> Decimal:
    return Decimal(str(value or 0)).quantize(Decimal("0.01"))


def _as_date(value) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(value)


def requalify_tiers(ctx: Context) -> dict:
    """Review every member's tier: upgrades the metric supports, downgrades once the grace has
    passed (one tier or straight down, by policy), the end of tiers set by staff, and the exact
    qualifying bound that lets purchases skip the lookup."""
    program, night = ctx.program, ctx.night
    all_tiers = program_tiers(program)
    summary = ctx.track(
        {
            "members": 0,
            "upgrades": 0,
            "downgrades": 0,
            "manual_ended": 0,
            "renewed": 0,
            "bounds": 0,
            "batches": 0,
        }
    )
    if not all_tiers:
        return summary
    review_start, review_end = policy.window_bounds(program, night - timedelta(days=1))
    now_start, _end = policy.window_bounds(program, night)
    since = min(review_start, now_start)
    params = [dt(review_start), dt(review_end), dt(now_start), dt(since)]
    last = 0
    while True:
        ids = [
            r[0]
            for r in fetch(
                f"SELECT id FROM {M} WHERE program_id = %s AND status <> 'closed' AND id > %s "  # noqa: S608  # nosec B608  # table name from model metadata; values are parameters
                "ORDER BY id LIMIT %s",
                [program.pk, last, ctx.batch_size],
            )
        ]
        if not ids:
            break
        rows = fetch(
            _values_sql(
                program,
                "m.program_id = %s AND m.id BETWEEN %s AND %s AND m.status <> 'closed'",
                purchases="p.member_id BETWEEN %s AND %s",
            ),
            [*params, ids[0], ids[-1], program.pk, ids[0], ids[-1]],
        )
        last = ids[-1]
        summary["members"] += len(rows)
        candidates = [r[0] for r in rows if _plan(program, all_tiers, night, r)]
        if not candidates:
            continue
        with batch_transaction(ctx):
            ledger.lock_members(candidates)
            locked = fetch(_values_sql(program, f"m.id IN ({ids_sql(candidates)})"), params)
            changes, updates = [], []
            for row in locked:
                plan = _plan(program, all_tiers, night, row)
                if not plan:
                    continue
                member_id, tier_id, review_on, manual_until, bound, v_review, _v_now = row
                decision, new_bound = plan
                if decision is not None:
                    new_tier = decision.tier
                    if decision.reason:
                        changes.append(
                            TierChange(
                                program_id=program.pk,
                                member_id=member_id,
                                from_tier_id=tier_id,
                                to_tier_id=new_tier.pk if new_tier else None,
                                reason=decision.reason,
                                qualifying_value=_as_decimal(v_review),
                                created_at=ctx.now,
                            )
                        )
                        key = {
                            TierChange.Reason.REQUALIFICATION: "upgrades",
                            TierChange.Reason.DOWNGRADE: "downgrades",
                            TierChange.Reason.MANUAL_ENDED: "manual_ended",
                        }[decision.reason]
                        summary[key] += 1
                    else:
                        summary["renewed"] += 1
                    tier_id = new_tier.pk if new_tier else None
                    review_on = decision.review_on
                    if decision.clear_manual:
                        manual_until = None
                if new_bound is not None:
                    summary["bounds"] += 1
                    bound = new_bound
                updates.append((tier_id, review_on, manual_until, bound, member_id))
            TierChange.objects.bulk_create(changes)
            with connection.cursor() as cursor:
                cursor.executemany(
                    f"UPDATE {M} SET tier_id = %s, tier_review_on = %s, tier_manual_until = %s, "  # noqa: S608  # nosec B608  # table name from model metadata; values are parameters
                    "qualifying_bound = %s WHERE id = %s",
                    updates,
                )
            summary["batches"] += 1
    return summary


def _plan(program, all_tiers, night, row):
    """(decision or None, new bound or None) for one member row, or None if nothing to do."""
    _id, tier_id, review_on, manual_until, bound, v_review, v_now = row
    decision = policy.decide(
        program,
        all_tiers,
        policy.tier_by_pk(all_tiers, tier_id),
        _as_decimal(v_review),
        review_on=_as_date(review_on),
        manual_until=_as_date(manual_until),
        night=night,
    )
    exact = _as_decimal(v_now)
    new_bound = exact if _as_decimal(bound) != exact else None
    if decision is None and new_bound is None:
        return None
    return decision, new_bound
