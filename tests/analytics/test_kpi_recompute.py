"""Recomputing the snapshots: in full, incrementally, again (identical rows), from the
command, the Celery task and the nightly chain, with its progress recorded."""

import json
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from analytics import services, tasks
from analytics.kpis import ensure_period_statistics
from analytics.models import (
    KpiCohort,
    KpiLiabilityByExpiry,
    KpiRefresh,
    KpiValue,
    Metric,
)
from analytics.periods import period_containing
from analytics.services import JOB_NAME, recompute
from config import nightly
from loyalty.models import JobRun, ProgramCost
from rewards.services import redeem
from tests.factories import ProgramCostFactory

from .conftest import PARIS, enrol_on, months_through_today, paris

pytestmark = pytest.mark.django_db

KINDS = ("month", "week", "quarter")


def month_start():
    return timezone.localdate(timezone.now(), PARIS).replace(day=1)


def snapshot(program):
    """Every stored figure of the program, without ids."""
    values = sorted(
        KpiValue.objects.filter(program=program).values_list(
            "period_kind",
            "period_start",
            "period_end",
            "dimension",
            "dimension_key",
            "store_id",
            "metric",
            "value",
            "numerator",
            "denominator",
        )
    )
    inputs = sorted(
        (v.period_kind, v.period_start, v.dimension, v.dimension_key, v.metric, repr(v.inputs))
        for v in KpiValue.objects.filter(program=program)
    )
    cohorts = sorted(
        KpiCohort.objects.filter(program=program).values_list(
            "cohort_month", "months_after", "members", "active", "rate"
        )
    )
    liability = sorted(
        KpiLiabilityByExpiry.objects.filter(program=program).values_list(
            "period_kind",
            "period_start",
            "expiry_month",
            "points",
            "amount",
            "expected_breakage_points",
            "expected_breakage_amount",
        ),
        key=repr,
    )
    return values, inputs, cohorts, liability


def full(program):
    for kind in KINDS:
        recompute(program=program, period_kind=kind, full=True)


@pytest.fixture
def no_margin(monkeypatch):
    """Look back no further than the last run's start (the margin would take in the rows the
    test just wrote before it)."""
    monkeypatch.setattr(services, "SAFETY_MARGIN", timedelta(0))


def test_running_again_gives_identical_rows(shop):
    full(shop.program)
    first = snapshot(shop.program)
    ids = sorted(KpiValue.objects.filter(program=shop.program).values_list("pk", flat=True))
    full(shop.program)
    assert snapshot(shop.program) == first
    # Upserts: the same rows, updated in place.
    assert sorted(KpiValue.objects.filter(program=shop.program).values_list("pk", flat=True)) == (
        ids
    )
    assert len(first[0]) > 100


def test_rows_no_longer_produced_are_deleted(shop, monkeypatch):
    """Each batch of periods written together (two here: several batches of a grouped run)
    deletes the figures, liability rows and cohort cells of its periods that the recompute no
    longer produces, and only those."""
    monkeypatch.setattr(services, "WRITE_BATCH_PERIODS", 2)
    full(shop.program)
    first = snapshot(shop.program)

    def copy(row, **changes):
        row.pk = None
        for name, value in changes.items():
            setattr(row, name, value)
        row.save()
        return row

    for kind in ("month", "week", "quarter"):
        figure = KpiValue.objects.filter(program=shop.program, period_kind=kind).last()
        copy(figure, dimension_key="gone", store=None)
    row = KpiLiabilityByExpiry.objects.filter(program=shop.program, period_kind="month").first()
    copy(row, expiry_month=date(2000, 1, 1))
    cell = KpiCohort.objects.filter(program=shop.program).first()
    # No one enrolled in July: a cell on September's diagonal goes, one on the diagonal of a
    # month to come (not recomputed) stays.
    copy(KpiCohort.objects.get(pk=cell.pk), cohort_month=date(2026, 7, 1), months_after=2)
    kept = copy(KpiCohort.objects.get(pk=cell.pk), cohort_month=date(2026, 7, 1), months_after=24)
    assert KpiValue.objects.filter(program=shop.program, dimension_key="gone").count() == 3

    full(shop.program)

    values, inputs, cohorts, liability = snapshot(shop.program)
    assert (values, inputs, liability) == (first[0], first[1], first[3])
    assert cohorts == sorted(
        [*first[2], (kept.cohort_month, kept.months_after, kept.members, kept.active, kept.rate)]
    )


def test_incremental_recompute_equals_full_recompute(shop, no_margin):
    full(shop.program)
    # Recorded after the last run: a purchase back-dated into October, a return of part of a
    # September purchase, a redemption today, a new member and a new cost.
    shop.buy("late", shop.m1, shop.store_w, paris(10, 20), "33.00")
    shop.give_back("p6", shop.store_w, "r6", paris(10, 21), "15.00")
    redeem(member=shop.m2, reward=shop.reward, channel="staff")
    enrol_on(shop.program, "m5@example.com", timezone.now())
    summaries = {kind: recompute(program=shop.program, period_kind=kind) for kind in KINDS}
    assert {s["mode"] for s in summaries.values()} == {"incremental"}
    # September (the return's purchase) to this month; August is left alone.
    assert (summaries["month"]["first"], summaries["month"]["total"]) == (
        "2026-09-01",
        months_through_today(date(2026, 9, 1)),
    )
    incremental = snapshot(shop.program)

    full(shop.program)
    assert snapshot(shop.program) == incremental
    # And from nothing.
    KpiValue.objects.all().delete()
    KpiCohort.objects.all().delete()
    KpiLiabilityByExpiry.objects.all().delete()
    full(shop.program)
    assert snapshot(shop.program) == incremental
    september = KpiValue.objects.get(
        program=shop.program,
        period_kind="month",
        period_start=date(2026, 9, 1),
        dimension="program",
        metric=Metric.REVENUE_MEMBER,
    )
    assert september.value == Decimal("175.00")  # 190 - 15 returned


def test_incremental_run_of_every_kind_at_once_equals_full_recompute(shop, no_margin):
    """As the nightly chain runs it: one run for month, week and quarter, whose per-period
    plans share one sum of the ledger before the earliest period start."""
    full(shop.program)
    # Back-dated into November: the quarter's plan starts on 1 October, the month's on
    # 1 November, the week's later still, with October's ledger rows in between.
    shop.buy("late", shop.m1, shop.store_w, paris(11, 20), "33.00")
    redeem(member=shop.m2, reward=shop.reward, channel="staff")
    summary = services.recompute_kinds(program=shop.program, period_kinds=KINDS)
    assert {k["mode"] for k in summary["kinds"].values()} == {"incremental"}
    # Periods of every kind that start at different instants, so the sums before them differ.
    assert len({k["first"] for k in summary["kinds"].values()}) > 1
    incremental = snapshot(shop.program)
    full(shop.program)
    assert snapshot(shop.program) == incremental


def test_incremental_run_reads_the_periods_it_compares_with(shop, no_margin):
    """The nightly run compares each period with P-1 and a year before: it reads their sales
    with its own (the same reads as a full recompute), so a stored figure of a period it
    leaves alone does not leak into the periods it recomputes, and a period that changed is
    compared with its fresh figures."""
    full(shop.program)
    current = period_containing("month", timezone.localdate(timezone.now(), PARIS))
    previous = current.shift(-1)

    def figure(period, metric):
        return KpiValue.objects.get(
            program=shop.program,
            period_kind="month",
            period_start=period.start,
            dimension="program",
            metric=metric,
        )

    stored = figure(previous, Metric.REVENUE_MEMBER).value
    # A mark on P-1's stored member revenue, which the run leaves alone.
    KpiValue.objects.filter(pk=figure(previous, Metric.REVENUE_MEMBER).pk).update(
        value=Decimal("999.00")
    )
    shop.buy("today", shop.m1, shop.store_w, timezone.now(), "10.00")
    summary = services.recompute_kinds(program=shop.program, period_kinds=KINDS)["kinds"]["month"]
    assert (summary["mode"], summary["first"]) == ("incremental", current.start.isoformat())
    assert figure(previous, Metric.REVENUE_MEMBER).value == Decimal("999.00")
    assert figure(current, Metric.MEMBER_REVENUE_POP).denominator == stored

    # A purchase back-dated into P-1: P-1 is recomputed, and this month compares with it.
    when = datetime.combine(previous.start + timedelta(days=9), time(12), tzinfo=PARIS)
    shop.buy("late", shop.m2, shop.store_w, when, "33.00")
    summary = services.recompute_kinds(program=shop.program, period_kinds=KINDS)["kinds"]["month"]
    assert summary["first"] == previous.start.isoformat()
    fresh = figure(previous, Metric.REVENUE_MEMBER).value
    assert fresh == stored + Decimal("33.00")
    assert figure(current, Metric.MEMBER_REVENUE_POP).denominator == fresh
    incremental = snapshot(shop.program)
    full(shop.program)
    assert snapshot(shop.program) == incremental


def test_incremental_recomputes_only_the_periods_that_changed(shop, no_margin):
    full(shop.program)
    # Nothing recorded since: nothing to do.
    summary = recompute(program=shop.program, period_kind="month")
    assert (summary["mode"], summary["total"]) == ("incremental", 0)
    # An anonymous purchase back-dated into October: October, and November that reads it
    # (retention, change on the previous period); not August or September.
    shop.buy("late", None, shop.store_a, paris(10, 30), "20.00")
    summary = recompute(program=shop.program, period_kind="month")
    assert summary["first"] == "2026-10-01"
    assert summary["total"] == summary["done"] == len({date(2026, 10, 1), month_start()})


def test_progress_and_state_are_recorded(shop):
    summary = recompute(program=shop.program, period_kind="month", full=True)
    run = JobRun.objects.filter(name=JOB_NAME).latest("started_at")
    assert run.status == JobRun.Status.SUCCEEDED
    assert run.summary["done"] == run.summary["total"] == summary["total"]
    assert run.summary["kinds"]["month"] == summary
    assert summary["first"] == "2026-08-01"
    refresh = KpiRefresh.objects.get(program=shop.program, period_kind="month")
    assert refresh.last_run == run


def test_a_new_cost_calls_for_a_full_recompute(shop):
    recompute(program=shop.program, period_kind="month", full=True)
    ProgramCostFactory(
        program=shop.program,
        kind=ProgramCost.Kind.RECURRING,
        label="Support",
        cost_amount=Decimal("100.00"),
        starts_on=date(2026, 8, 1),
    )
    summary = recompute(program=shop.program, period_kind="month")
    assert summary["mode"] == "full"
    cost = KpiValue.objects.get(
        program=shop.program,
        period_kind="month",
        period_start=date(2026, 8, 1),
        dimension="program",
        metric=Metric.PROGRAM_COST,
    )
    assert cost.value == Decimal("650.00")  # 450 + 100 launch + 100 support


def test_chosen_periods_only(shop):
    summary = recompute(program=shop.program, period_kind="month", periods=[date(2026, 9, 15)])
    assert (summary["mode"], summary["total"], summary["first"]) == ("periods", 1, "2026-09-01")
    assert set(
        KpiValue.objects.filter(program=shop.program).values_list("period_start", flat=True)
    ) == {date(2026, 9, 1)}
    # Chosen periods do not stand for a complete run.
    assert not KpiRefresh.objects.filter(program=shop.program).exists()


def test_queries_per_period_do_not_grow_with_members(shop):
    # The planner statistics are created once, by the first recompute that needs them.
    ensure_period_statistics(["month"])
    with CaptureQueriesContext(connection) as small:
        recompute(program=shop.program, period_kind="month", periods=[date(2026, 9, 1)])
    for n in range(30):
        member = enrol_on(shop.program, f"extra{n}@example.com", paris(9, 1))
        shop.buy(f"extra{n}", member, shop.store_a, paris(9, 2), "10.00")
    with CaptureQueriesContext(connection) as large:
        recompute(program=shop.program, period_kind="month", periods=[date(2026, 9, 1)])
    assert len(large) == len(small)
    assert len(small) < 60


@pytest.mark.postgres
def test_the_reads_of_a_period_run_with_the_configured_work_mem(shop, settings):
    settings.KPI_WORK_MEM = "5MB"
    with CaptureQueriesContext(connection) as captured:
        recompute(program=shop.program, period_kind="month", periods=[date(2026, 9, 1)])
    set_configs = [q["sql"] for q in captured if "set_config" in q["sql"]]
    # Set with set_config(..., true): local to the reads' transaction.
    assert any(
        "'work_mem'" in sql and "'5MB'" in sql and "true" in sql.lower() for sql in set_configs
    ), set_configs


def test_command_recomputes_the_programs_asked(shop):
    out = StringIO()
    call_command("recompute_kpis", "--program", "shop", "--full", "--period", "month", stdout=out)
    summary = json.loads(out.getvalue())
    assert summary["shop"]["month"]["mode"] == "full"
    assert summary["shop"]["month"]["done"] == summary["shop"]["month"]["total"]
    assert not KpiValue.objects.filter(program=shop.program, period_kind="week").exists()
    out = StringIO()
    call_command("recompute_kpis", "--program", "shop", stdout=out)
    summary = json.loads(out.getvalue())
    assert summary["shop"]["month"]["mode"] == "incremental"
    assert summary["shop"]["week"]["mode"] == "full"  # first run of this kind
    with pytest.raises(CommandError, match="nope"):
        call_command("recompute_kpis", "--program", "nope", stdout=StringIO())


def test_dry_run_writes_no_snapshot(shop):
    call_command("recompute_kpis", "--dry-run", stdout=StringIO())
    assert not KpiValue.objects.exists()
    assert not KpiRefresh.objects.exists()


def test_celery_task_recomputes(shop):
    summary = tasks.recompute_kpis.apply(
        kwargs={"program_ids": [shop.program.pk], "period_kinds": ["month"], "full": True}
    ).get()
    assert summary["shop"]["month"]["done"] == months_through_today(date(2026, 8, 1))
    assert KpiValue.objects.filter(program=shop.program, period_kind="month").exists()


def test_the_nightly_chain_recomputes_after_tiers_and_before_emails(shop, no_margin):
    order = nightly.NIGHTLY_ORDER
    assert order.index("requalify_tiers") < order.index("recompute_kpis")
    assert order.index("recompute_kpis") < order.index("notify_members")
    result = nightly.run_nightly(now=timezone.now())
    assert result["recompute_kpis"]["shop"]["month"]["mode"] == "full"
    assert KpiValue.objects.filter(program=shop.program, period_kind="quarter").exists()
    # The chain records the step in its own job run.
    assert not JobRun.objects.filter(name=JOB_NAME).exists()
    assert JobRun.objects.get(name="members.recompute_kpis").status == JobRun.Status.SUCCEEDED
    # The next night only recomputes what changed.
    result = nightly.run_nightly(now=timezone.now())
    assert result["recompute_kpis"]["shop"]["month"]["mode"] == "incremental"
    assert result["recompute_kpis"]["shop"]["month"]["total"] == 0
    # A purchase recorded during the day: its month (the current one) the next night.
    shop.buy("today", shop.m1, shop.store_a, timezone.now(), "12.00")
    result = nightly.run_nightly(now=timezone.now())
    month = result["recompute_kpis"]["shop"]["month"]
    assert (month["total"], month["first"]) == (1, month_start().isoformat())
