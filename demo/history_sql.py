"""The bulk writing behind the demo history (demo/history.py, demo/campaign_history.py): COPY
on PostgreSQL from a writer thread, multi-row INSERT elsewhere, with the rows' columns and
their text forms. Ledger rows go through the ledger's bulk-load functions (members/ledger.py),
the only writer of the ledger table.
"""

import queue
import random
import threading
from datetime import UTC, date, datetime
from decimal import Decimal

from django.db import connection

from members import ledger
from members.models import Member, PointsEntry, Purchase


class UUIDText(str):
    """A UUID as text (8-4-4-4-12), drawn cheaply; SQLite gets it as Django stores UUIDs."""


def uuid4(rng: random.Random) -> UUIDText:
    """A version-4 UUID drawn from `rng` (reproducible), as text."""
    n = rng.getrandbits(128) & ~(0xF000 << 64) | (0x4000 << 64)
    h = f"{n & ~(0xC000 << 48) | (0x8000 << 48):032x}"
    return UUIDText(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")


_FORMATTERS = {}


def copy_formatter(table: str):
    """A function turning one row of `table` into a line of COPY text.

    One `str.format` call per row: formatting value by value was the largest remaining cost
    of the load. Only the nullable and boolean columns need a look; the generator's strings
    (names from fixed lists, slugs, digits, JSON of numbers) never hold a tab, a newline or a
    backslash, which COPY text would need escaped.
    """
    if table in _FORMATTERS:
        return _FORMATTERS[table]
    model = {m._meta.db_table: m for m in (Member, Purchase, PointsEntry)}[table]
    columns = {
        "members_member": MEMBER_COLUMNS,
        "members_purchase": PURCHASE_COLUMNS,
        "members_pointsentry": ENTRY_COLUMNS,
    }[table]
    by_column = {f.column: f for f in model._meta.concrete_fields}
    nullable = [i for i, c in enumerate(columns) if by_column[c].null]
    booleans = [
        i for i, c in enumerate(columns) if by_column[c].get_internal_type() == "BooleanField"
    ]
    template = "\t".join(f"{{{i}}}" for i in range(len(columns))) + "\n"
    fmt = template.format

    def to_text(row):
        values = list(row)
        for i in nullable:
            if values[i] is None:
                values[i] = "\\N"
        for i in booleans:
            values[i] = "t" if values[i] else "f"
        return fmt(*values)

    _FORMATTERS[table] = to_text
    return to_text


def sqlite_value(value):
    """Values as Django stores them in SQLite: UUIDs as hex, times as naive UTC text."""
    if isinstance(value, UUIDText):
        return value.replace("-", "")
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ")
    if isinstance(value, Decimal | date):
        return str(value)
    return value


class Writer:
    """COPY on PostgreSQL, multi-row INSERT elsewhere; ledger rows through the ledger's
    bulk-load functions (`ledger.copy_entries`, `ledger.insert_entries`).

    On PostgreSQL a writer thread streams each chunk with COPY while the caller generates the
    next one, so that the server's work overlaps Python's. It uses the same connection, inside
    the caller's transaction; the caller does not touch the connection until `close()`.
    """

    def __init__(self):
        self.pg = connection.vendor == "postgresql"
        self._queue = None
        self._thread = None
        self._error = None

    def start(self) -> None:
        if not self.pg:
            return
        connection.ensure_connection()
        raw = connection.connection
        self._queue = queue.Queue(maxsize=2)

        def run():
            while (item := self._queue.get()) is not None:
                if self._error is None:
                    try:
                        write, args = item
                        write(raw, *args)
                    except BaseException as exc:  # re-raised by close()
                        self._error = exc

        self._thread = threading.Thread(target=run, name="seed-copy", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Wait until everything queued is written; raise the writer's error, if any."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        if self._error is not None:
            raise self._error

    @staticmethod
    def _copy(raw, table: str, cols: str, text: str) -> None:
        with raw.cursor() as cursor, cursor.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
            copy.write(text)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.close()

    def write(self, table: str, columns: list[str], rows) -> None:
        """Write `rows`: COPY text on PostgreSQL, a list of tuples elsewhere. Ledger rows
        (ENTRY_COLUMNS) go to the ledger's bulk-load functions."""
        if not rows:
            return
        if table == ENTRIES_TABLE and list(columns) != ENTRY_COLUMNS:
            raise ValueError("ledger rows are loaded with ledger.LOAD_COLUMNS")
        cols = ", ".join(columns)
        if self._thread is not None:
            if self._error is not None:
                self.close()
            if table == ENTRIES_TABLE:
                self._queue.put((ledger.copy_entries, (rows,)))
            else:
                self._queue.put((self._copy, (table, cols, rows)))
        elif table == ENTRIES_TABLE:
            ledger.insert_entries(rows)
        else:
            marks = ", ".join(["%s"] * len(columns))
            with connection.cursor() as cursor:
                cursor.executemany(f"INSERT INTO {table} ({cols}) VALUES ({marks})", rows)  # noqa: S608  # nosec B608  # table and column names from model metadata; values are parameters

    def defer_checks(self) -> None:
        """On PostgreSQL, as a superuser, skip the per-row foreign-key triggers for this
        transaction: the rows are consistent by construction (ids are assigned here, parents
        written first) and check_ledger verifies the result. Without that right, rows are
        checked as usual, only slower."""
        if not self.pg:
            return
        with connection.cursor() as cursor:
            cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            row = cursor.fetchone()
            if row and row[0]:
                cursor.execute("SET LOCAL session_replication_role = replica")

    def next_id(self, model) -> int:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT COALESCE(MAX(id), 0) + 1 FROM {model._meta.db_table}")  # noqa: S608  # nosec B608  # table name from model metadata
            return cursor.fetchone()[0]

    def reset_sequence(self, model) -> None:
        if self.pg:
            table = model._meta.db_table
            with connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608  # nosec B608  # table name from model metadata
                    f"(SELECT COALESCE(MAX(id), 1) FROM {table}))"
                )


MEMBER_COLUMNS = [
    "id",
    "program_id",
    "card_number",
    "email",
    "phone",
    "first_name",
    "last_name",
    "birth_date",
    "preferred_language",
    "marketing_consent",
    "marketing_consent_at",
    "status",
    "enrolled_at",
    "enrolment_channel",
    "enrolment_store_id",
    "referral_code",
    "referred_by_id",
    "tier_id",
    "tier_review_on",
    "tier_manual_until",
    "qualifying_bound",
    "points_available",
    "points_pending",
    "points_lifetime",
    "last_activity_at",
    "created_at",
    "updated_at",
]
PURCHASE_COLUMNS = [
    "id",
    "public_id",
    "program_id",
    "store_id",
    "member_id",
    "receipt_id",
    "total_amount",
    "currency",
    "occurred_at",
    "recorded_at",
    "points_earned",
    "returned_amount",
    "points_reversed",
    "breakdown",
    "release_at",
    "released_at",
    "request_hash",
    "response",
]
# The ledger's own list: ledger rows are loaded by members/ledger.py.
ENTRY_COLUMNS = list(ledger.LOAD_COLUMNS)
ENTRIES_TABLE = PointsEntry._meta.db_table


def analyze(*models) -> None:
    """On PostgreSQL, refresh the planner's statistics of tables that a bulk load just filled:
    until autovacuum gets to them (if it runs at all), the planner takes a table of a million
    rows for an empty one and picks nested loops that take minutes."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE " + ", ".join(m._meta.db_table for m in models))
