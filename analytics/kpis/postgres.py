"""How the KPI reads run on PostgreSQL: the settings of their transactions, local to them
(`READ_SETTINGS`, `GROUPED_READ_SETTINGS`, and the per-statement toggles `index_scans`,
`hashed_periods`), the reads of a recompute run on several connections at once (`run_reads`),
and the planner statistics on the period expressions (`ensure_period_statistics`). On SQLite
each of them does nothing, or runs the reads one after the other."""

import hashlib
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from django.conf import settings
from django.db import DatabaseError, connection, transaction

from loyalty.models import Program
from members.models import PointsEntry

from .reads.common import period_sql

logger = logging.getLogger(__name__)


# Settings for the reads of a recompute on PostgreSQL, local to their transaction. The grouped
# queries' estimated costs (millions of rows from member x period expansions) make PostgreSQL
# JIT-compile them, about a second per query whatever the data size (docs/kpis.md, plans read).
READ_SETTINGS = {"jit": "off"}
# The reads that sum the program's history (ledger, members, tiers, liability) are best served
# by a sequential scan then sort, where the planner prefers walking an index in member order
# for the window queries (about a third slower at 100,000 members: docs/kpis.md, plans read).
# The reads of a span of purchases turn index scans back on for their statement
# (`index_scans`): the covering (program, time) index holds what they read.
GROUPED_READ_SETTINGS = {**READ_SETTINGS, "enable_indexscan": "off"}


def grouped_read_settings() -> dict[str, str]:
    """`GROUPED_READ_SETTINGS` with `settings.KPI_WORK_MEM` for the sorts and hashes of each
    read (the server's default of 4 MB spills a few million rows to disk)."""
    return {**GROUPED_READ_SETTINGS, "work_mem": settings.KPI_WORK_MEM}


@contextmanager
def analytics_reads(read_settings: dict[str, str] = READ_SETTINGS):
    """A transaction for the reads of one recompute step, with `read_settings` on PostgreSQL."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                for name, value in read_settings.items():
                    cursor.execute("SELECT set_config(%s, %s, true)", [name, value])
        yield


@contextmanager
def index_scans():
    """Index scans allowed (on PostgreSQL) for the statements inside, which the grouped reads
    otherwise turn off (`GROUPED_READ_SETTINGS`)."""
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor, local_settings(cursor, {"enable_indexscan": "on"}):
        yield


@contextmanager
def hashed_periods():
    """Sums grouped by periods found by their bounds (`period_sql` with a span) hashed, not
    sorted (on PostgreSQL): the planner has no statistics on that expression, takes every
    timestamp for a group of its own and sorts the rows to disk, where a hash table holds the
    few thousand (day, key) groups there are."""
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor, local_settings(cursor, {"enable_sort": "off"}):
        yield


@contextmanager
def local_settings(cursor, wanted: dict[str, str]):
    """The settings of `wanted` (name: value) for the statements inside, within the current
    transaction; each back to what it was after them."""
    before = {}
    for name, value in wanted.items():
        cursor.execute("SELECT current_setting(%s)", [name])
        before[name] = cursor.fetchone()[0]
        cursor.execute("SELECT set_config(%s, %s, true)", [name, value])
    try:
        yield
    finally:
        for name, value in before.items():
            cursor.execute("SELECT set_config(%s, %s, true)", [name, value])


def run_reads(reads: Mapping[object, Callable], read_settings: dict[str, str]) -> dict:
    """The result of each read of `reads` (by name), each in a transaction with
    `read_settings` (`analytics_reads`). On PostgreSQL, outside a transaction, they run on
    `settings.KPI_READ_CONNECTIONS` connections at once, a thread each, in the order given:
    PostgreSQL runs most of each grouped read in one process, so that two connections keep
    two cores busy. Each read is one statement under READ COMMITTED, as they are on one
    connection. Inside a transaction (a test's, say), another connection would not see its
    rows: the reads then run one after the other on this connection, as on SQLite."""
    workers = min(settings.KPI_READ_CONNECTIONS, len(reads))
    if workers < 2 or connection.vendor != "postgresql" or connection.in_atomic_block:
        with analytics_reads(read_settings):
            return {name: read() for name, read in reads.items()}

    def run(read):
        try:
            with analytics_reads(read_settings):
                return read()
        finally:
            connection.close()  # the thread's own connection

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kpi-read") as pool:
        futures = {name: pool.submit(run, read) for name, read in reads.items()}
        return {name: future.result() for name, future in futures.items()}


# The timestamps that reads group by their local month through the time zone (the month-end
# liability's, `period_sql` without a span): without statistics on the period expression,
# PostgreSQL estimates as many groups as distinct timestamps (about one per row), and so never
# sums the rows in parallel workers (partial aggregation) nor in a hash table. Statistics on
# the expression itself (`CREATE STATISTICS ... ON (expression)`, one per table, period kind
# and time zone in use) give it the real number of periods, and the ledger's sums by month run
# in parallel and hashed, about twice as fast. (The reads that find their periods by bounds
# cannot have statistics on their expression, whose bounds change every day: they are told to
# hash, `hashed_periods`.)
PERIOD_STATISTICS = ((PointsEntry, "effective_at"),)


PERIOD_STATISTICS_PREFIX = "analytics_period_"


def _period_statistics_name(model, kind: str, time_zone: str) -> str:
    zone = hashlib.sha256(time_zone.encode()).hexdigest()[:12]
    return f"{PERIOD_STATISTICS_PREFIX}{model._meta.model_name}_{kind}_{zone}"


def _ddl(statement: str) -> bool:
    """Run `statement` in a savepoint; False, with a warning in the log, when the database
    refuses it (another recompute created the same statistics at the same moment, or the
    application's user does not own the table): the recompute goes on without."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement)
    except DatabaseError as error:
        logger.warning("KPI planner statistics: %s failed: %s", statement, error)
        return False
    return True


def ensure_period_statistics(kinds) -> list[str]:
    """Create the statistics on the period expressions of `kinds` for the time zone of every
    program (PostgreSQL; nothing elsewhere), drop the others (of time zones no program uses
    any more, or of expressions no read groups by any more), and ANALYZE the tables that got
    new ones so that the planner reads them at once (autovacuum keeps them current
    afterwards). The names of the statistics created."""
    if connection.vendor != "postgresql":
        return []
    qn = connection.ops.quote_name
    zones = sorted(set(Program.objects.values_list("time_zone", flat=True)))
    wanted = {}
    for model, column in PERIOD_STATISTICS:
        for zone in zones:
            for kind in kinds:
                program = Program(time_zone=zone)
                sql, params = period_sql(qn(column), kind, program)
                wanted[_period_statistics_name(model, kind, zone)] = (model, sql, params)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT stxname FROM pg_statistic_ext WHERE starts_with(stxname, %s)",
            [PERIOD_STATISTICS_PREFIX],
        )
        existing = {row[0] for row in cursor.fetchall()}
    created, analyze = [], set()
    for name, (model, sql, params) in wanted.items():
        if name in existing:
            continue
        # DDL takes no parameters: the kind and the zone (a program's validated zone name)
        # are quoted as literals by the driver.
        expression = connection.ops.compose_sql(sql, params)
        ddl = (
            f"CREATE STATISTICS IF NOT EXISTS {qn(name)} ON ({expression}) "
            f"FROM {qn(model._meta.db_table)}"
        )
        if _ddl(ddl):
            created.append(name)
            analyze.add(model._meta.db_table)
    for name in sorted(existing - set(wanted)):
        _ddl(f"DROP STATISTICS IF EXISTS {qn(name)}")
    for table in sorted(analyze):
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {qn(table)}")
    return created
