"""The points ledger: the only module that appends ledger rows and changes cached balances.

Every change of points is one or more `PointsEntry` rows sharing a transaction id, written in
the same database transaction as the update of the member's cached balances, while the caller
holds the lock on the member row (`lock_member`). Different members proceed in parallel.
"""

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import connection, transaction

from loyalty.models import Tier
from loyalty.sql import from_row, insert, insert_params, insert_sql, mark_saved, select_columns

from .models import Member, PointsEntry

Kind = PointsEntry.Kind
Bucket = PointsEntry.Bucket

# Kinds that count towards lifetime points (earned, net of returns). Spending, expiry and
# moves between buckets do not.
LIFETIME_KINDS = frozenset({Kind.EARN, Kind.BONUS, Kind.RETURN})
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Posting:
    kind: str
    bucket: str
    points: int


def lock_member(queryset) -> Member:
    """Lock and return the one member the queryset selects (with its tier), or raise DoesNotExist.

    Only the member row is locked (`of=self`), so the tier table stays free.
    """
    return queryset.select_related("tier").select_for_update(of=("self",)).get()


_LOCK_BY_CARD_SQL = None


def lock_member_by_card(program_id: int, card_number: str) -> Member:
    """`lock_member` for the POS hot path: the member with this card in this program, locked,
    with its tier, in one precompiled query. Raises Member.DoesNotExist."""
    global _LOCK_BY_CARD_SQL
    if _LOCK_BY_CARD_SQL is None:
        _LOCK_BY_CARD_SQL = (
            f"SELECT {select_columns(Member, 'm')}, {select_columns(Tier, 't')} "  # noqa: S608  # nosec B608  # table and column names from model metadata; values are parameters
            f"FROM {Member._meta.db_table} m LEFT JOIN {Tier._meta.db_table} t "
            "ON t.id = m.tier_id WHERE m.program_id = %s AND m.card_number = %s "
            + ("FOR UPDATE OF m" if connection.vendor == "postgresql" else "")
        )
    with connection.cursor() as cursor:
        cursor.execute(_LOCK_BY_CARD_SQL, [program_id, card_number])
        row = cursor.fetchone()
    if row is None:
        raise Member.DoesNotExist
    member, i = from_row(Member, row)
    tier, _ = from_row(Tier, row, i)
    member.tier = tier
    return member


def post(
    member: Member,
    postings: Iterable[Posting],
    *,
    effective_at: datetime,
    txn: uuid.UUID | None = None,
    purchase=None,
    purchase_return=None,
    store=None,
    staff_user=None,
    reason: str = "",
    is_activity: bool = False,
    qualifying: Decimal = ZERO,
) -> list[PointsEntry]:
    """Append the rows of one business action and move the member's cached balances with them.

    The caller is inside a transaction and holds the member's lock (see `lock_member`). Zero
    postings are skipped. `member` is updated in place with the new balances. `qualifying`
    raises the member's qualifying bound (members/tiers/policy.py) in the same UPDATE.
    """
    if not connection.in_atomic_block:
        raise transaction.TransactionManagementError("ledger.post needs a transaction")
    txn = txn or uuid.uuid4()
    rows = [
        PointsEntry(
            txn=txn,
            program_id=member.program_id,
            member_id=member.pk,
            kind=p.kind,
            bucket=p.bucket,
            points=p.points,
            effective_at=effective_at,
            purchase=purchase,
            purchase_return=purchase_return,
            store=store,
            staff_user=staff_user,
            reason=reason,
        )
        for p in postings
        if p.points
    ]
    d_available = sum(r.points for r in rows if r.bucket == Bucket.AVAILABLE)
    d_pending = sum(r.points for r in rows if r.bucket == Bucket.PENDING)
    d_lifetime = sum(r.points for r in rows if r.kind in LIFETIME_KINDS)
    # The member row is locked and was read under the lock, so its last activity is current; a
    # back-dated purchase must not move it back in time.
    last_activity = member.last_activity_at
    if is_activity and (last_activity is None or last_activity < effective_at):
        last_activity = effective_at
    balances = [d_available, d_pending, d_lifetime, qualifying, last_activity, member.pk]
    if rows and connection.vendor == "postgresql":
        # The rows and the balances in one statement (one round trip instead of two): the
        # INSERT is a data-modifying WITH clause of the UPDATE, which returns the rows' ids.
        with connection.cursor() as cursor:
            cursor.execute(
                f"WITH entries AS ({insert_sql(PointsEntry, len(rows))}) "  # noqa: S608  # nosec B608  # SQL built from model metadata; values are parameters
                f"{_UPDATE_BALANCES_SQL} RETURNING (SELECT array_agg(id ORDER BY id) FROM entries)",
                insert_params(rows) + balances,
            )
            updated = cursor.fetchone()
        if updated is None:
            raise Member.DoesNotExist(f"member {member.pk} is gone")
        mark_saved(rows, updated[0])
    else:
        insert(rows)
        if rows or qualifying or last_activity != member.last_activity_at:
            with connection.cursor() as cursor:
                cursor.execute(_UPDATE_BALANCES_SQL, balances)
    member.points_available += d_available
    member.points_pending += d_pending
    member.points_lifetime += d_lifetime
    member.last_activity_at = last_activity
    member.qualifying_bound += qualifying
    return rows


# Moves a member's cached balances (and qualifying bound) by deltas; a NULL last activity
# leaves the current one. The only statement that changes them, for `post` and `post_many`.
_UPDATE_BALANCES_SQL = (
    f"UPDATE {Member._meta.db_table} SET points_available = points_available + %s, "  # noqa: S608  # nosec B608  # table name from model metadata; values are parameters
    "points_pending = points_pending + %s, points_lifetime = points_lifetime + %s, "
    "qualifying_bound = qualifying_bound + %s, "
    "last_activity_at = COALESCE(%s, last_activity_at) WHERE id = %s"
)


# Bulk postings, for the nightly jobs ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BulkPosting:
    """One ledger row of a bulk action; rows of one member's action share `txn`."""

    member_id: int
    kind: str
    bucket: str
    points: int
    txn: uuid.UUID
    effective_at: datetime
    purchase_id: int | None = None
    store_id: int | None = None
    reason: str = ""
    earned_at: datetime | None = None


def lock_members(member_ids: Sequence[int]) -> list[int]:
    """Lock these members' rows (in id order, so that two lockers cannot deadlock); return the
    ids that exist. The caller is inside a transaction."""
    if not member_ids:
        return []
    return list(
        Member.objects.filter(pk__in=sorted(member_ids))
        .order_by("pk")
        .select_for_update()
        .values_list("pk", flat=True)
    )


_ENTRY_COLUMNS = (
    "txn",
    "program_id",
    "member_id",
    "kind",
    "bucket",
    "points",
    "created_at",
    "effective_at",
    "earned_at",
    "purchase_id",
    "store_id",
    "reason",
)
_BULK_CHUNK = 1000


def post_many(program_id: int, postings: Sequence[BulkPosting], *, now: datetime) -> None:
    """Append the rows of many members' actions and move their cached balances with them.

    The caller is inside a transaction and holds the lock of every member concerned
    (`lock_members`). Rows go in multi-row INSERTs, balances in one batched UPDATE. Moves
    between buckets and expiries are not activity: last activity stays as it is.
    """
    if not connection.in_atomic_block:
        raise transaction.TransactionManagementError("ledger.post_many needs a transaction")
    postings = [p for p in postings if p.points]
    if not postings:
        return
    field = PointsEntry._meta.get_field
    txn_prep = field("txn").get_db_prep_value
    time_prep = field("effective_at").get_db_prep_value
    created = time_prep(now, connection)
    deltas: dict[int, list[int]] = {}
    table = PointsEntry._meta.db_table
    columns = ", ".join(f'"{c}"' for c in _ENTRY_COLUMNS)
    placeholders = "(" + ", ".join(["%s"] * len(_ENTRY_COLUMNS)) + ")"
    with connection.cursor() as cursor:
        for start in range(0, len(postings), _BULK_CHUNK):
            chunk = postings[start : start + _BULK_CHUNK]
            params = []
            for p in chunk:
                params += [
                    txn_prep(p.txn, connection),
                    program_id,
                    p.member_id,
                    p.kind,
                    p.bucket,
                    p.points,
                    created,
                    time_prep(p.effective_at, connection),
                    time_prep(p.earned_at, connection) if p.earned_at else None,
                    p.purchase_id,
                    p.store_id,
                    p.reason,
                ]
                d = deltas.setdefault(p.member_id, [0, 0, 0])
                d[0 if p.bucket == Bucket.AVAILABLE else 1] += p.points
                if p.kind in LIFETIME_KINDS:
                    d[2] += p.points
            cursor.execute(
                f'INSERT INTO "{table}" ({columns}) VALUES '  # noqa: S608  # nosec B608  # table name from model metadata, constant columns; values are parameters
                + ", ".join([placeholders] * len(chunk)),
                params,
            )
        cursor.executemany(
            _UPDATE_BALANCES_SQL,
            [(a, p, li, 0, None, member_id) for member_id, (a, p, li) in sorted(deltas.items())],
        )


# Bulk loading, for generated histories (the demo) -----------------------------------------------
#
# A bulk loader (demo/history.py) writes members, purchases and their ledger rows in one
# transaction, with ids it assigns itself, far faster than business actions would. It writes
# ledger rows only through the functions below, which move no balance, and then moves the cached
# balances by the rows it appended with `settle_loaded_entries`: this module stays the only
# writer of the ledger table and of cached balances, and `find_mismatches` checks the result.

# The columns of a loaded row, in order (`copy_entries`, `insert_entries`).
LOAD_COLUMNS = (
    "id",
    "txn",
    "program_id",
    "member_id",
    "kind",
    "bucket",
    "points",
    "created_at",
    "effective_at",
    "purchase_id",
    "purchase_return_id",
    "store_id",
    "staff_user_id",
    "reason",
)
_LOAD_INTO = f"{PointsEntry._meta.db_table} ({', '.join(LOAD_COLUMNS)})"


def copy_entries(raw_connection, text: str) -> None:
    """PostgreSQL: append ledger rows given as COPY text (one row a line, LOAD_COLUMNS), moving
    no balance. `raw_connection` is the driver connection under Django's, inside the loader's
    transaction: the loader streams from a writer thread while it generates the next rows."""
    with (
        raw_connection.cursor() as cursor,
        cursor.copy(f"COPY {_LOAD_INTO} FROM STDIN") as copy,
    ):
        copy.write(text)


def insert_entries(rows: Sequence[tuple]) -> None:
    """Other databases: append ledger rows given as tuples (LOAD_COLUMNS, values as the database
    stores them), moving no balance."""
    marks = ", ".join(["%s"] * len(LOAD_COLUMNS))
    with connection.cursor() as cursor:
        cursor.executemany(f"INSERT INTO {_LOAD_INTO} VALUES ({marks})", rows)  # noqa: S608  # nosec B608  # table and column names from model metadata and constants; values are parameters


def insert_entries_from_select(select_sql: str, params: Sequence) -> int:
    """Append the rows a SELECT yields (the columns of `post_many`'s rows, in the same order:
    txn, program_id, member_id, kind, bucket, points, created_at, effective_at, earned_at,
    purchase_id, store_id, reason), moving no balance; return how many. For a loader that
    derives rows from rows already loaded (a campaign's bonus rows from the earn rows)."""
    columns = ", ".join(_ENTRY_COLUMNS)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {PointsEntry._meta.db_table} ({columns}) {select_sql}",  # nosec B608  # table name from model metadata, constant columns, a SELECT written by the loader; values are parameters
            list(params),
        )
        return cursor.rowcount


_SETTLE_SQL = f"""
UPDATE {Member._meta.db_table} SET
    points_available = points_available + d.available,
    points_pending = points_pending + d.pending,
    points_lifetime = points_lifetime + d.lifetime
FROM (SELECT member_id,
             SUM(CASE WHEN bucket = 'available' THEN points ELSE 0 END) AS available,
             SUM(CASE WHEN bucket = 'pending' THEN points ELSE 0 END) AS pending,
             SUM(CASE WHEN kind IN ('earn', 'bonus', 'return') THEN points ELSE 0 END)
                 AS lifetime
      FROM {PointsEntry._meta.db_table} WHERE program_id = %s AND id >= %s
      GROUP BY member_id) d
WHERE {Member._meta.db_table}.id = d.member_id
"""  # noqa: S608  # nosec B608  # table names from model metadata; values are parameters


def settle_loaded_entries(program_id: int, *, entry_id_from: int) -> None:
    """Move the cached balances of the program's members by the ledger rows a bulk load
    appended (ids from `entry_id_from`), in one UPDATE. The loader is inside a transaction and
    no other writer touches these members (they are new, or the load holds them)."""
    if not connection.in_atomic_block:
        raise transaction.TransactionManagementError(
            "ledger.settle_loaded_entries needs a transaction"
        )
    with connection.cursor() as cursor:
        cursor.execute(_SETTLE_SQL, [program_id, entry_id_from])


MISMATCH_SQL = """
SELECT m.id, m.card_number,
       m.points_available, COALESCE(s.available, 0),
       m.points_pending, COALESCE(s.pending, 0),
       m.points_lifetime, COALESCE(s.lifetime, 0)
FROM members_member m
LEFT JOIN (
    SELECT member_id,
           SUM(CASE WHEN bucket = 'available' THEN points ELSE 0 END) AS available,
           SUM(CASE WHEN bucket = 'pending' THEN points ELSE 0 END) AS pending,
           SUM(CASE WHEN kind IN ('earn', 'bonus', 'return') THEN points ELSE 0 END) AS lifetime
    FROM members_pointsentry
    GROUP BY member_id
) s ON s.member_id = m.id
WHERE m.points_available <> COALESCE(s.available, 0)
   OR m.points_pending <> COALESCE(s.pending, 0)
   OR m.points_lifetime <> COALESCE(s.lifetime, 0)
ORDER BY m.id
LIMIT %s
"""

UNBALANCED_RELEASES_SQL = """
SELECT txn, SUM(points) FROM members_pointsentry
WHERE kind = 'release' GROUP BY txn HAVING SUM(points) <> 0 LIMIT %s
"""

PURCHASE_MISMATCH_SQL = """
SELECT p.id, p.receipt_id, p.points_earned, COALESCE(e.earned, 0),
       p.points_reversed, COALESCE(e.reversed, 0)
FROM members_purchase p
LEFT JOIN (
    SELECT purchase_id,
           SUM(CASE WHEN kind IN ('earn', 'bonus') THEN points ELSE 0 END) AS earned,
           -SUM(CASE WHEN kind = 'return' THEN points ELSE 0 END) AS reversed
    FROM members_pointsentry WHERE purchase_id IS NOT NULL GROUP BY purchase_id
) e ON e.purchase_id = p.id
WHERE p.member_id IS NOT NULL
  AND (p.points_earned <> COALESCE(e.earned, 0) OR p.points_reversed <> COALESCE(e.reversed, 0))
ORDER BY p.id
LIMIT %s
"""


def find_mismatches(limit: int = 100) -> list[str]:
    """Check the ledger invariants with set-based SQL; return one line per broken invariant.

    Cached balances equal the sums of ledger rows per member and bucket; every release moves
    points between buckets without creating any; each purchase's recorded points equal its rows.
    """
    problems = []
    with connection.cursor() as cursor:
        cursor.execute(MISMATCH_SQL, [limit])
        for mid, card, av, av_sum, pe, pe_sum, li, li_sum in cursor.fetchall():
            problems.append(
                f"member {mid} ({card}): cached available/pending/lifetime {av}/{pe}/{li} "
                f"!= ledger {av_sum}/{pe_sum}/{li_sum}"
            )
        cursor.execute(UNBALANCED_RELEASES_SQL, [limit])
        for txn, total in cursor.fetchall():
            problems.append(f"release transaction {txn} does not balance: {total:+d}")
        cursor.execute(PURCHASE_MISMATCH_SQL, [limit])
        for pid, receipt, earned, earned_sum, rev, rev_sum in cursor.fetchall():
            problems.append(
                f"purchase {pid} ({receipt}): earned/reversed {earned}/{rev} "
                f"!= ledger {earned_sum}/{rev_sum}"
            )
    return problems
