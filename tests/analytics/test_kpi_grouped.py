"""The grouped reads give each period the same figures whatever other periods they read with:
every period of a kind (a full recompute), or a few periods apart from each other (the
nightly incremental run), on a random history: purchases of members and anonymous customers
in two stores, returns, redemptions and cancellations, releases and expiries by the nightly
jobs, tier upgrades; in three time zones and under each expiry policy."""

import contextlib
import random
import threading
import time
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from analytics import kpis, services
from analytics.kpis.postgres import (
    GROUPED_READ_SETTINGS,
    READ_SETTINGS,
    _ddl,
    analytics_reads,
    run_reads,
)
from analytics.kpis.reads.activity import member_activity, store_masks
from analytics.periods import period_containing, periods_between
from config import nightly
from loyalty.errors import DomainError
from loyalty.models import Program, ProgramCost, Store
from members.models import PointsEntry, Purchase
from members.services import record_purchase, record_return
from rewards.models import Reward
from rewards.services import cancel, redeem
from tests.factories import ProgramCostFactory, ProgramFactory, StoreFactory, TierFactory

from .conftest import enrol_on

pytestmark = pytest.mark.django_db

KINDS = ("month", "week", "quarter")


def build_history(seed: int, time_zone: str, policy: str) -> Program:
    """About 14 months of random activity ending now, recorded through the services."""
    rng = random.Random(seed)
    tz = ZoneInfo(time_zone)
    program = ProgramFactory(
        slug=f"random-{seed}",
        time_zone=time_zone,
        return_window_days=rng.choice([0, 7]),
        backdating_days=3650,
        expiry_policy=policy,
        expiry_months=None if policy == Program.ExpiryPolicy.NONE else 2,
        point_cost_amount=Decimal("0.01"),
    )
    TierFactory(program=program, name="Bronze", rank=0)
    TierFactory(program=program, name="Silver", rank=1, qualify_threshold=Decimal(300))
    stores = [
        StoreFactory(program=program, slug="a", channel="shop"),
        StoreFactory(program=program, slug="w", channel="web"),
        # A second shop: a member buying in both in one period is one active member of the
        # channel.
        StoreFactory(program=program, slug="b", channel="shop"),
    ]
    reward = Reward.objects.create(
        program=program,
        name_fr="Cadeau",
        kind=Reward.Kind.GIFT,
        points_cost=40,
        cost_amount=Decimal("4.00"),
    )
    ProgramCostFactory(
        program=program,
        kind=ProgramCost.Kind.RECURRING,
        cost_amount=Decimal("300.00"),
        starts_on=(timezone.now() - timedelta(days=400)).date(),
    )
    now = timezone.now()
    start = now - timedelta(days=420)
    members = [
        enrol_on(program, f"r{seed}-{n}@example.com", start + timedelta(days=rng.randrange(400)))
        for n in range(14)
    ]
    events = []
    for n in range(160):
        when = start + timedelta(days=rng.randrange(415), minutes=rng.randrange(24 * 60))
        member = rng.choice([*members, None, None])
        if member is not None and when < member.enrolled_at:
            when = member.enrolled_at + timedelta(hours=1)
        events.append((when, n, member))
    events.sort(key=lambda e: (e[0], e[1]))
    nights = sorted(
        {
            datetime.combine(day, datetime.min.time().replace(hour=2, minute=30), tz)
            for day in ((start + timedelta(days=d)).astimezone(tz).date() for d in range(0, 415, 9))
        }
    )
    bought = []
    for when, n, member in events:
        while nights and nights[0] < when:
            night = nights.pop(0)
            for job in ("release_pending_points", "expire_points"):
                nightly.run_job(job, now=night, programs=[program])
        store = rng.choice(stores)
        amount = Decimal(rng.randrange(500, 15000)) / 100
        record_purchase(
            store=store,
            receipt_id=f"p{n}",
            amount=amount,
            currency="EUR",
            occurred_at=when,
            card_number=member.card_number if member else None,
        )
        bought.append((store, f"p{n}", amount, when))
        roll = rng.random()
        if roll < 0.15:
            store, receipt, paid, at = rng.choice(bought)
            back = min(paid, Decimal(rng.randrange(100, 8000)) / 100)
            with contextlib.suppress(DomainError):  # more than is left to return: skipped
                record_return(
                    store=store,
                    receipt_id=receipt,
                    return_id=f"r{n}",
                    amount=back,
                    occurred_at=max(at, when) + timedelta(hours=1),
                )
        elif roll < 0.3 and member is not None:
            member.refresh_from_db()
            if member.points_available >= reward.points_cost:
                try:
                    voucher = redeem(member=member, reward=reward, channel="staff", now=when)
                except DomainError:
                    continue
                if rng.random() < 0.3:
                    cancel(redemption=voucher, reason="test", now=when + timedelta(hours=2))
    return program


def assert_same_results(results, expected) -> None:
    """`results` (PeriodResults) hold exactly the figures of `expected` (by period)."""
    for result in results:
        full = expected[result.period]
        assert result.figures == full.figures, result.period
        assert result.liability == full.liability, result.period
        assert result.cohorts == full.cohorts, result.period
        assert result.points_to_date == full.points_to_date, result.period


def incremental_plans(periods: list, rng: random.Random) -> list[list]:
    """Plans of an incremental run among `periods`: each period alone, and a few sets of
    periods apart from each other (a back-dated day, the period after it and a year later)."""
    plans = [[period] for period in periods]
    for _ in range(3):
        plans.append(sorted(rng.sample(periods, min(3, len(periods)))))
    return plans


@pytest.mark.parametrize(
    ("seed", "time_zone", "policy"),
    [
        (1, "Europe/Paris", Program.ExpiryPolicy.AFTER_EARNING),
        # A 7-day return window: points still pending at the end of the current period.
        (5, "Europe/Paris", Program.ExpiryPolicy.AFTER_EARNING),
        (2, "America/New_York", Program.ExpiryPolicy.AFTER_INACTIVITY),
        (3, "Asia/Tokyo", Program.ExpiryPolicy.NONE),
    ],
)
def test_grouped_reads_of_a_few_periods_equal_those_of_every_period(seed, time_zone, policy):
    program = build_history(seed, time_zone, policy)
    assert PointsEntry.objects.filter(program=program, kind="redeem").exists()
    if policy == Program.ExpiryPolicy.AFTER_EARNING:
        assert PointsEntry.objects.filter(program=program, kind="expire").exists()
    first_day = kpis.first_activity_day(program)
    today = timezone.localdate(timezone.now(), program.tzinfo)
    costs = list(ProgramCost.objects.filter(program=program))
    rng = random.Random(seed)
    for kind in KINDS:
        periods = periods_between(kind, first_day, today)
        assert len(periods) > 3
        with CaptureQueriesContext(connection) as grouped_queries:
            grouped = list(kpis.compute_periods(program, periods, first_day=first_day, costs=costs))
        # A handful of grouped queries, whatever the number of periods (besides the
        # transaction and its settings, and the setting read and restored around one query).
        reads = [
            q["sql"]
            for q in grouped_queries
            if q["sql"].lstrip().upper().startswith(("SELECT", "WITH"))
            and "set_config" not in q["sql"]
            and "current_setting" not in q["sql"]
        ]
        # The 9 reads of the KPIs and the campaign costs; the program's stores and their
        # channels.
        assert len(reads) <= 10
        assert [r.period for r in grouped] == periods
        expected = {r.period: r for r in grouped}
        for plan in incremental_plans(periods, rng):
            results = list(kpis.compute_periods(program, plan, first_day=first_day, costs=costs))
            assert [r.period for r in results] == plan
            assert_same_results(results, expected)
        assert any(r.liability for r in grouped) == (kind == "month")


@pytest.mark.parametrize(
    ("seed", "time_zone", "policy"),
    [
        (1, "Europe/Paris", Program.ExpiryPolicy.AFTER_EARNING),
        (2, "America/New_York", Program.ExpiryPolicy.AFTER_INACTIVITY),
        (3, "Asia/Tokyo", Program.ExpiryPolicy.NONE),
    ],
)
def test_several_kinds_read_together_give_the_facts_of_each_kind_alone(seed, time_zone, policy):
    """Month, week and quarter read together (the sums read once by local day, then added
    up by each kind's periods) give exactly the facts of each kind read alone, its own sums
    grouped by its periods in SQL, in fewer reads."""
    program = build_history(seed, time_zone, policy)
    first_day = kpis.first_activity_day(program)
    today = timezone.localdate(timezone.now(), program.tzinfo)
    plans = {kind: periods_between(kind, first_day, today) for kind in KINDS}
    with CaptureQueriesContext(connection) as together_queries:
        together = kpis.grouped_facts_of_kinds(program, plans, first_day=first_day, costs=[])
    assert list(together) == list(KINDS)
    alone_reads = 0
    for kind, periods in plans.items():
        with CaptureQueriesContext(connection) as alone_queries:
            alone = kpis.grouped_facts(program, periods, first_day=first_day, costs=[])
        alone_reads += sum("members_purchase" in q["sql"] for q in alone_queries)
        assert list(together[kind]) == periods
        for period in periods:
            assert together[kind][period] == alone[period], period
    # The purchases: the member activity and the campaign costs of each kind, and the sales
    # by store once instead of once per kind.
    assert sum("members_purchase" in q["sql"] for q in together_queries) == alone_reads - 2
    # A nightly run's plans, a few periods of each kind apart from each other, read together.
    rng = random.Random(seed)
    for _ in range(3):
        few = {kind: sorted(rng.sample(periods, 3)) for kind, periods in plans.items()}
        nightly = kpis.grouped_facts_of_kinds(program, few, first_day=first_day, costs=[])
        for kind, periods in few.items():
            assert list(nightly[kind]) == periods
            for period in periods:
                assert nightly[kind][period] == together[kind][period], period


def test_a_full_recompute_runs_the_grouped_queries(shop):
    """A full recompute of every month runs a bounded number of queries: grouped ones, then
    the writes of each period; adding periods adds writes, not reads."""
    with CaptureQueriesContext(connection) as queries:
        summary = services.recompute(program=shop.program, period_kind="month", full=True)
    assert summary["total"] > 3
    # (On PostgreSQL, the first run also creates and analyses the planner statistics.)
    reads = [
        q
        for q in queries
        if "members_purchase" in q["sql"]
        and q["sql"].lstrip().upper().startswith(("SELECT", "WITH"))
    ]
    # Sales by store, member activity (with the active members per channel); the
    # first-activity lookup; the campaign costs (bonuses net of the returned share of their
    # purchase).
    assert len(reads) == 4


def _group_estimate(expression: str, table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) SELECT {expression} FROM {table} GROUP BY 1")  # noqa: S608
        plan = cursor.fetchone()[0]
    return plan[0]["Plan"]["Plan Rows"]


@pytest.mark.postgres
def test_a_full_recompute_gives_the_planner_statistics_on_the_period_expressions(shop):
    """Without statistics, PostgreSQL estimates a group per distinct timestamp; with those
    that a full recompute creates on the ledger's months (what the month-end liability groups
    by), about one per month, for the program's time zone only. Statistics that the reads no
    longer use go."""
    program = shop.program
    with connection.cursor() as cursor:
        # Left by tests that commit (statistics are not data: a flush keeps them).
        cursor.execute(
            "SELECT stxname FROM pg_statistic_ext WHERE stxname LIKE 'analytics_period_%%'"
        )
        for (name,) in cursor.fetchall():
            cursor.execute(f'DROP STATISTICS "{name}"')
        # The column statistics of this test's rows, not of the last test that committed.
        cursor.execute("ANALYZE members_pointsentry")
        # Statistics of an earlier version, on the purchases' days.
        cursor.execute(
            'CREATE STATISTICS "analytics_period_purchase_day_0123456789ab" '
            "ON (CAST(DATE_TRUNC('day', occurred_at AT TIME ZONE 'UTC') AS date)) "
            "FROM members_purchase"
        )
    month = "CAST(DATE_TRUNC('month', effective_at AT TIME ZONE 'Europe/Paris') AS date)"
    distinct = PointsEntry.objects.filter(program=program).values("effective_at").distinct()
    assert distinct.count() > 8
    assert _group_estimate(month, "members_pointsentry") >= distinct.count()

    services.recompute(program=program, period_kind="month", full=True)

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT stxname FROM pg_statistic_ext WHERE stxname LIKE 'analytics_period_%%'"
        )
        names = sorted(row[0] for row in cursor.fetchall())
    assert [name.rsplit("_", 2)[0] for name in names] == ["analytics_period_pointsentry"]
    # August to October: three months of ledger rows.
    assert _group_estimate(month, "members_pointsentry") <= 4
    # Another run creates nothing; when the program moves to another zone, the statistics
    # of the old one go and the new zone's come.
    assert kpis.ensure_period_statistics(["month"]) == []
    program.time_zone = "America/Montreal"
    program.save(update_fields=["time_zone"])
    created = kpis.ensure_period_statistics(["month"])
    assert len(created) == 1
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT stxname FROM pg_statistic_ext WHERE stxname LIKE 'analytics_period_%%'"
        )
        assert sorted(row[0] for row in cursor.fetchall()) == sorted(created)
    montreal = month.replace("Europe/Paris", "America/Montreal")
    assert _group_estimate(montreal, "members_pointsentry") <= 4
    # A refused statement (here: a column that does not exist, as a user who does not own the
    # table would be refused) is logged and leaves the recompute's transaction usable.
    assert not _ddl('CREATE STATISTICS "analytics_period_x" ON (no_such) FROM members_purchase')
    assert Purchase.objects.filter(program=program).exists()


@pytest.mark.postgres
def test_the_member_activity_read_leaves_the_planner_settings_as_it_found_them(shop):
    """The purchases are read in member order from the member index (index scans on for that
    one read), the cohort join is merged (hash joins off for it); the reads after it in the
    same transaction plan as before. The pairs carry the stores of their purchases."""
    program = shop.program
    first, last = periods_between("month", date(2026, 8, 1), date(2026, 10, 1))[::2]
    with analytics_reads(GROUPED_READ_SETTINGS), connection.cursor() as cursor:
        rows = member_activity(
            program,
            "month",
            [(first.bounds(program.tzinfo)[0], last.bounds(program.tzinfo)[1])],
            store_masks(Store.objects.filter(program=program).values_list("pk", flat=True)),
        )
        cursor.execute("SELECT current_setting('enable_hashjoin')")
        assert cursor.fetchone()[0] == "on"
        # On for that read only (the member index), off for the other grouped reads.
        cursor.execute("SELECT current_setting('enable_indexscan')")
        assert cursor.fetchone()[0] == "off"
    # m1 and m2 in August, m1 and m3 in September, m2 and m3 in October (conftest.py).
    assert sum(row[4] for row in rows if row[0] == "pairs") == 6
    # By the stores they bought in (mask: A is bit 0, W bit 1): m1 and m2 in A in August; m1
    # and m3 in both in September; m2 in A and m3 in W in October.
    by_stores = {(row[1], row[6]): row[4] for row in rows if row[0] == "stores"}
    assert by_stores == {
        (date(2026, 8, 1), 1): 2,
        (date(2026, 9, 1), 3): 2,
        (date(2026, 10, 1), 1): 1,
        (date(2026, 10, 1), 2): 1,
    }


def test_active_members_per_store_and_channel_beyond_one_mask_of_stores(db):
    """A program with more stores than one bit mask holds (63): a member who bought in the
    first and the 66th store is one active member of each and of each of their channels, in
    the grouped form as in the period by period one."""
    program = ProgramFactory(slug="many-stores", return_window_days=0, backdating_days=3650)
    TierFactory(program=program, name="Bronze", rank=0)
    stores = [
        StoreFactory(program=program, slug=f"s{n}", channel="web" if n == 65 else "shop")
        for n in range(70)
    ]
    x = enrol_on(program, "x@example.com", timezone.now() - timedelta(days=200))
    y = enrol_on(program, "y@example.com", timezone.now() - timedelta(days=200))
    when = timezone.now() - timedelta(days=100)
    for n, (member, store) in enumerate(
        [(x, stores[0]), (x, stores[65]), (y, stores[65]), (y, stores[65]), (None, stores[69])]
    ):
        record_purchase(
            store=store,
            receipt_id=f"m{n}",
            amount=Decimal("10.00"),
            currency="EUR",
            occurred_at=when + timedelta(hours=n),
            card_number=member.card_number if member else None,
        )
    assert len(store_masks(Store.objects.filter(program=program).values_list("pk", flat=True))) == 2
    first_day = kpis.first_activity_day(program)
    periods = periods_between("month", first_day, timezone.localdate(timezone.now()))
    grouped = {
        r.period: r for r in kpis.compute_periods(program, periods, first_day=first_day, costs=[])
    }
    for period in periods:
        alone = kpis.compute_periods(program, [period], first_day=first_day, costs=[])
        assert_same_results(alone, grouped)
    month = period_containing("month", timezone.localdate(when, program.tzinfo))
    facts = kpis.grouped_facts(program, periods, first_day=first_day, costs=[])[month]
    active = {row["store_id"]: row["active"] for row in facts.by_store}
    assert active == {stores[0].pk: 1, stores[65].pk: 2, stores[69].pk: 0}
    assert {row["store__channel"]: row["active"] for row in facts.by_channel} == {
        "shop": 1,
        "web": 2,
    }
    assert facts.totals["active"] == 2


def _backend() -> tuple[int, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid(), current_setting('jit')")
        return cursor.fetchone()


def _connections_to_this_database() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def _connections_back_to(before: int) -> bool:
    """Whether the other connections to the test database come back to `before` within ten
    seconds: a server process leaves pg_stat_activity a moment after its client closed."""
    deadline = time.monotonic() + 10
    while _connections_to_this_database() != before:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_the_reads_run_at_once_on_connections_of_their_own(settings):
    """Each read meets the other at a barrier (run one after the other, the first would wait
    for ever), each on its own server process with the read settings, and both connections
    are closed after, also when a read fails."""
    settings.KPI_READ_CONNECTIONS = 2
    before = _connections_to_this_database()
    barrier = threading.Barrier(2, timeout=20)

    def read():
        barrier.wait()
        return _backend()

    result = run_reads({"a": read, "b": read}, GROUPED_READ_SETTINGS)
    (pid_a, jit_a), (pid_b, jit_b) = result["a"], result["b"]
    assert len({pid_a, pid_b, _backend()[0]}) == 3
    assert jit_a == jit_b == "off"
    assert _connections_back_to(before)

    def fails():
        raise ValueError("no such read")

    with pytest.raises(ValueError, match="no such read"):
        run_reads({"ok": _backend, "fails": fails}, READ_SETTINGS)
    assert _connections_back_to(before)


@pytest.mark.postgres
def test_inside_a_transaction_the_reads_run_on_its_connection(settings):
    """Another connection would not see the transaction's rows: the reads run on its own."""
    settings.KPI_READ_CONNECTIONS = 2
    own = _backend()[0]
    result = run_reads({"a": _backend, "b": _backend}, GROUPED_READ_SETTINGS)
    assert result == {"a": (own, "off"), "b": (own, "off")}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_grouped_reads_on_two_connections_give_the_figures_of_one(settings):
    """On committed rows, outside a transaction: the grouped reads run on other connections
    than the caller's (it runs none of them) and give the figures that one connection gives."""
    program = build_history(1, "Europe/Paris", Program.ExpiryPolicy.AFTER_EARNING)
    first_day = kpis.first_activity_day(program)
    today = timezone.localdate(timezone.now(), program.tzinfo)
    for kind in KINDS:
        periods = periods_between(kind, first_day, today)
        settings.KPI_READ_CONNECTIONS = 1
        with CaptureQueriesContext(connection) as queries:
            one = list(kpis.compute_periods(program, periods, first_day=first_day, costs=[]))
        assert any("members_purchase" in q["sql"] for q in queries)
        settings.KPI_READ_CONNECTIONS = 2
        with CaptureQueriesContext(connection) as queries:
            two = list(kpis.compute_periods(program, periods, first_day=first_day, costs=[]))
        assert not any("members_purchase" in q["sql"] for q in queries)
        assert [r.figures for r in two] == [r.figures for r in one]
        assert [r.liability for r in two] == [r.liability for r in one]
        assert [r.cohorts for r in two] == [r.cohorts for r in one]
        assert any(r.liability for r in two) == (kind == "month")
