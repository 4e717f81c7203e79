"""The demo's past campaign made real: the history live traffic would have left (awards, bonus
ledger rows, extra visits of the treated members), loaded in bulk after demo/history.py.
Ledger rows go through the ledger's bulk-load functions (members/ledger.py).
"""

import random
from collections import namedtuple
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import ROUND_FLOOR, Decimal

from django.db import connection, transaction
from django.utils import timezone

from loyalty import rules
from loyalty.models import Campaign, Segment, Store, Tier
from loyalty.sql import dt
from members import ledger
from members.campaigns import refresh_segment
from members.models import CampaignAward, Member, PointsEntry, Purchase

from .history import StoreInfo, channel_rates, earn_row, poisson_small, purchase_row
from .history_sql import (
    ENTRY_COLUMNS,
    PURCHASE_COLUMNS,
    Writer,
    analyze,
    copy_formatter,
    sqlite_value,
)

# The demo's past campaign, made real --------------------------------------------------------

# The past campaign's effect on its treated members: extra visits in its dates (Poisson, per
# member) with fuller baskets than their own. Real campaigns do less (+10 to 20% visits), but
# the default demo of 300 members reaches about 95 members, 20 of them held out: an effect
# that size would be lost in the noise. With this one the frequency uplift's 95% interval
# excludes zero whatever the seed, and the revenue uplift's in about nine draws out of ten
# (at 20,000 members, always).
CAMPAIGN_EXTRA_VISITS = 1.0
CAMPAIGN_BASKET_LIFT = 1.25
_GROUPS_TABLE = "demo_campaign_groups"
_PURCHASES = Purchase._meta.db_table
_MEMBERS = Member._meta.db_table
_ENTRIES = PointsEntry._meta.db_table
_RowPlan = namedtuple("_RowPlan", "program_pk currency")


@dataclass
class CampaignHistoryStats:
    reached: int = 0
    held_out: int = 0
    awards: int = 0
    extra_purchases: int = 0
    bonus_points: int = 0
    tier_upgrades: int = 0
    segments: dict = field(default_factory=dict)


def generate_campaign_history(
    *, campaign: Campaign, segments: Sequence[Segment], seed: int
) -> CampaignHistoryStats:
    """Give an ended purchase campaign with a hold-out group the history live traffic would
    have left, once (nothing if it already has awards); then refresh `segments`.

    The members it reached are those with a purchase earning points in its dates; each is
    treated or held out by `loyalty.rules.is_held_out`, as the engine decides. Treated members
    get extra purchases in its dates (the campaign's effect, CAMPAIGN_EXTRA_VISITS per member,
    drawn with the seeded generator). Every purchase of a reached member in its dates gets a
    `CampaignAward` (0 points for the held out); a treated member's purchase gets the
    campaign's bonus as a `bonus` row of its ledger transaction, with its points, breakdown
    and stored answer to match; the ledger then moves cached balances by the rows loaded
    (`ledger.settle_loaded_entries`). Set-based: one pass
    in Python over the members reached, the rest is INSERT ... SELECT and UPDATE ... FROM.
    Needs a whole multiplier (a bonus of the purchase's points x (multiplier - 1)).
    """
    stats = CampaignHistoryStats()
    campaign = Campaign.objects.select_related("program").get(pk=campaign.pk)  # values as stored
    extra_factor = campaign.effect_value - 1
    if campaign.effect != Campaign.Effect.MULTIPLIER or extra_factor != int(extra_factor):
        raise ValueError("the demo's past campaign must be a whole multiplier")
    extra_factor = int(extra_factor)
    program = campaign.program
    now = timezone.now().replace(microsecond=0)
    start, end = campaign.starts_at, min(campaign.ends_at or now, now)
    window = (program.pk, dt(start), dt(end))
    in_window = (
        "p.program_id = %s AND p.member_id IS NOT NULL AND p.points_earned > 0 "
        "AND p.occurred_at >= %s AND p.occurred_at < %s"
    )
    writer = Writer()
    with transaction.atomic():
        if CampaignAward.objects.filter(campaign=campaign).exists():
            return stats
        analyze(Member, Purchase, PointsEntry)
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                SELECT g.member_id, g.n, g.spend, f.store_id, COALESCE(t.earn_multiplier, 1)
                FROM (SELECT p.member_id, COUNT(*) AS n, SUM(p.total_amount) AS spend,
                             MIN(p.id) AS first_id
                      FROM {_PURCHASES} p WHERE {in_window} GROUP BY p.member_id) g
                JOIN {_PURCHASES} f ON f.id = g.first_id
                JOIN {_MEMBERS} m ON m.id = g.member_id
                LEFT JOIN {Tier._meta.db_table} t ON t.id = m.tier_id
                ORDER BY g.member_id
                """,  # noqa: S608  # nosec B608  # table names and SQL built in this module; values are parameters
                window,
            )
            reached = cursor.fetchall()
            groups = [
                (row[0], rules.is_held_out(row[0], campaign.pk, campaign.holdout_percent))
                for row in reached
            ]
            stats.reached = len(groups)
            stats.held_out = sum(held for _member, held in groups)
            if connection.vendor == "postgresql":
                cursor.execute(
                    f"CREATE TEMP TABLE {_GROUPS_TABLE} (member_id bigint PRIMARY KEY, "
                    "held_out boolean NOT NULL) ON COMMIT DROP"
                )
                with cursor.copy(f"COPY {_GROUPS_TABLE} (member_id, held_out) FROM STDIN") as copy:
                    copy.write("".join(f"{m}\t{'t' if h else 'f'}\n" for m, h in groups))
            else:
                cursor.execute(
                    f"CREATE TEMP TABLE {_GROUPS_TABLE} (member_id integer PRIMARY KEY, "
                    "held_out bool NOT NULL)"
                )
                cursor.executemany(f"INSERT INTO {_GROUPS_TABLE} VALUES (%s, %s)", groups)  # noqa: S608  # nosec B608  # a constant table name; values are parameters
        purchase_base, entry_base = writer.next_id(Purchase), writer.next_id(PointsEntry)
        purchases, entries = _extra_visits(
            program, campaign, reached, dict(groups), seed, now, purchase_base, entry_base
        )
        stats.extra_purchases = len(purchases)
        writer.defer_checks()
        with writer:
            for table, columns, rows in (
                (_PURCHASES, PURCHASE_COLUMNS, purchases),
                (_ENTRIES, ENTRY_COLUMNS, entries),
            ):
                if writer.pg:
                    writer.write(table, columns, "".join(map(copy_formatter(table), rows)))
                else:
                    writer.write(table, columns, [tuple(map(sqlite_value, r)) for r in rows])
        for model in (Purchase, PointsEntry):
            writer.reset_sequence(model)
        _write_campaign_rows(campaign, extra_factor, in_window, window, stats)
        with connection.cursor() as cursor:
            ledger.settle_loaded_entries(program.pk, entry_id_from=entry_base)
            _move_activity(cursor, program.pk, purchase_base)
            stats.tier_upgrades = _upgrade_tiers(cursor, program, purchase_base, now, seed)
            cursor.execute(f"DROP TABLE IF EXISTS {_GROUPS_TABLE}")
    analyze(CampaignAward)
    for segment in segments:
        stats.segments[segment.name] = refresh_segment(segment, now=now)
    return stats


def _extra_visits(program, campaign, reached, held_out, seed, now, purchase_id, entry_id):
    """The treated members' extra purchases in the campaign's dates and their earn rows, as
    the generator writes them: at one of the member's stores, around the member's basket, the
    channel's rate x the member's tier multiplier."""
    rng = random.Random(f"{seed}:campaign")  # nosec B311  # seeded generator for reproducible demo data, not security
    stores = {
        row[0]: StoreInfo(*row)
        for row in Store.objects.filter(program=program).values_list("pk", "slug", "channel")
    }
    rates = channel_rates(program)
    plan = _RowPlan(program.pk, program.currency)
    window = timedelta(days=program.return_window_days)
    start, end = campaign.starts_at, min(campaign.ends_at or now, now)
    span = (end - start).total_seconds()
    purchases, entries = [], []
    for member_id, count, spend, store_id, multiplier in reached:
        if held_out[member_id]:
            continue
        store = stores[store_id]
        basket = float(spend) / count
        for _ in range(poisson_small(rng, CAMPAIGN_EXTRA_VISITS)):
            at = (start + timedelta(seconds=rng.random() * span)).replace(microsecond=0)
            amount = basket * CAMPAIGN_BASKET_LIFT * rng.lognormvariate(0, 0.3)
            amount = Decimal(f"{max(3.0, amount):.2f}")
            points = int(
                (amount * rates[store.channel] * Decimal(str(multiplier))).to_integral_value(
                    ROUND_FLOOR
                )
            )
            released = at + window <= now
            purchases.append(
                purchase_row(
                    rng, purchase_id, plan, store, member_id, at, amount, points, window, released
                )
            )
            if points:
                entries.append(
                    earn_row(
                        rng,
                        entry_id,
                        program.pk,
                        member_id,
                        points,
                        at,
                        purchase_id,
                        store.pk,
                        released,
                    )
                )
                entry_id += 1
            purchase_id += 1
    return purchases, entries


def _write_campaign_rows(campaign, extra_factor, in_window, window, stats) -> None:
    """The awards of every purchase of the reached members in the campaign's dates, then the
    treated ones' bonus rows (in the ledger transaction of the purchase's earn row), points,
    breakdown and stored answer."""
    groups = f"JOIN {_GROUPS_TABLE} g ON g.member_id = p.member_id"
    earn = f"JOIN {_ENTRIES} e ON e.purchase_id = p.id AND e.kind = 'earn'"
    if connection.vendor == "postgresql":
        item = (
            "breakdown || jsonb_build_array(jsonb_build_object('code', 'campaign', "
            "'name', %s::text, 'factor', %s::text, 'amount', total_amount::text, "
            "'points', points_earned * %s, 'rule_id', %s::integer))"
        )
    else:
        item = (
            "json_insert(breakdown, '$[#]', json_object('code', 'campaign', 'name', %s, "
            "'factor', %s, 'amount', printf('%%.2f', total_amount), "
            "'points', points_earned * %s, 'rule_id', %s))"
        )
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {CampaignAward._meta.db_table}
                (program_id, campaign_id, member_id, purchase_id, store_id, occasion, points,
                 is_held_out, occurred_at, txn)
            SELECT p.program_id, %s, p.member_id, p.id, p.store_id, '',
                   CASE WHEN g.held_out THEN 0 ELSE e.points * %s END, g.held_out,
                   p.occurred_at, CASE WHEN g.held_out THEN NULL ELSE e.txn END
            FROM {_PURCHASES} p {groups} {earn}
            WHERE {in_window}
            """,  # noqa: S608  # nosec B608  # table names and SQL built in this module; values are parameters
            [campaign.pk, extra_factor, *window],
        )
        stats.awards = cursor.rowcount
        ledger.insert_entries_from_select(
            f"""
            SELECT e.txn, e.program_id, e.member_id, 'bonus', e.bucket, e.points * %s,
                   e.created_at, e.effective_at, NULL, e.purchase_id, e.store_id, ''
            FROM {_PURCHASES} p {groups} {earn}
            WHERE NOT g.held_out AND {in_window}
            """,  # noqa: S608  # nosec B608  # table names and SQL built in this module; values are parameters
            [extra_factor, *window],
        )
        cursor.execute(
            f"""
            UPDATE {_PURCHASES} SET
                points_earned = points_earned * %s,
                breakdown = {item},
                response = replace(response, '"points_earned":' || points_earned || '}}',
                                   '"points_earned":' || (points_earned * %s) || '}}')
            FROM (SELECT p.id FROM {_PURCHASES} p {groups}
                  WHERE NOT g.held_out AND {in_window}) t
            WHERE {_PURCHASES}.id = t.id
            """,  # noqa: S608  # nosec B608  # table names and SQL built in this module; values are parameters
            [
                extra_factor + 1,
                campaign.name,
                str(campaign.effect_value),
                extra_factor,
                campaign.pk,
                extra_factor + 1,
                *window,
            ],
        )
        cursor.execute(
            f"SELECT COALESCE(SUM(points), 0) FROM {CampaignAward._meta.db_table} "  # noqa: S608  # nosec B608  # table name from model metadata; values are parameters
            "WHERE campaign_id = %s",
            [campaign.pk],
        )
        stats.bonus_points = cursor.fetchone()[0]


def _move_activity(cursor, program_id, purchase_base) -> None:
    """In one UPDATE: the extra purchases' activity and qualifying spend (ids from
    `purchase_base`; the bound stays an upper bound). Their points move the cached balances
    through the ledger (`ledger.settle_loaded_entries`)."""
    cursor.execute(
        f"""
        UPDATE {_MEMBERS} SET
            qualifying_bound = qualifying_bound + x.spend,
            last_activity_at = CASE
                WHEN last_activity_at IS NULL OR last_activity_at < x.last_at
                THEN x.last_at ELSE last_activity_at END
        FROM (SELECT member_id, SUM(total_amount) AS spend, MAX(occurred_at) AS last_at
              FROM {_PURCHASES} WHERE program_id = %s AND id >= %s GROUP BY member_id) x
        WHERE {_MEMBERS}.id = x.member_id
        """,  # noqa: S608  # nosec B608  # table names from model metadata; values are parameters
        [program_id, purchase_base],
    )


def _upgrade_tiers(cursor, program, purchase_base, now, seed) -> int:
    """Members whose extra purchases (ids from `purchase_base`) lift their spend over the last
    365 days to a higher tier's threshold get that tier, as the generator assigns tiers (a
    review within the coming year), so the history stays one the nightly jobs only confirm.
    Upgrades only: spend was added. Returns how many."""
    tiers = list(
        Tier.objects.filter(program=program)
        .order_by("-rank")
        .values_list("pk", "rank", "qualify_threshold")
    )
    if not tiers:
        return 0
    ranks = {pk: rank for pk, rank, _threshold in tiers}
    cursor.execute(
        f"""
        SELECT p.member_id, m.tier_id, SUM(p.total_amount)
        FROM {_PURCHASES} p JOIN {_MEMBERS} m ON m.id = p.member_id
        WHERE p.program_id = %s AND p.occurred_at > %s AND p.member_id IN (
            SELECT member_id FROM {_PURCHASES} WHERE program_id = %s AND id >= %s)
        GROUP BY p.member_id, m.tier_id
        ORDER BY p.member_id
        """,  # noqa: S608  # nosec B608  # table names from model metadata; values are parameters
        [program.pk, dt(now - timedelta(days=365)), program.pk, purchase_base],
    )
    rng = random.Random(f"{seed}:campaign-tiers")  # nosec B311  # seeded generator for reproducible demo data, not security
    today = timezone.localtime(now, program.tzinfo).date()
    upgrades = []
    for member_id, tier_id, spend in cursor.fetchall():
        spend = Decimal(str(spend))
        pk, rank, _threshold = next((t for t in tiers if spend >= t[2]), tiers[-1])
        if tier_id is None or rank > ranks[tier_id]:
            upgrades.append((pk, today + timedelta(days=rng.randint(1, 365)), member_id))
    if upgrades:
        cursor.executemany(
            f"UPDATE {_MEMBERS} SET tier_id = %s, tier_review_on = %s WHERE id = %s",  # noqa: S608  # nosec B608  # table name from model metadata; values are parameters
            upgrades,
        )
    return len(upgrades)
