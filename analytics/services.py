"""Recompute the KPI snapshots of a program: in full, for chosen periods, or incrementally (the
periods that what was recorded since the last run can have changed). Each run is a JobRun
(`analytics.recompute_kpis`) whose summary holds its progress: `done` of `total` periods."""

import hashlib
import json
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.db.models.functions import TruncDate
from django.utils import timezone

from loyalty.jobs import record_job_run, save_progress
from loyalty.models import Program, ProgramCost
from members.models import Member, PointsEntry, Purchase, PurchaseReturn, TierChange
from rewards.models import Redemption

from . import kpis
from .models import (
    CELL_KEY,
    FIGURE_KEY,
    KpiCohort,
    KpiLiabilityByExpiry,
    KpiRefresh,
    KpiValue,
    PeriodKind,
)
from .periods import Period, period_containing, periods_between

JOB_NAME = "analytics.recompute_kpis"
# What was recorded this long before a run started may have been committed after it read:
# the next incremental run looks at it again.
SAFETY_MARGIN = timedelta(minutes=10)
ALL_KINDS = (PeriodKind.MONTH, PeriodKind.WEEK, PeriodKind.QUARTER)


def settings_fingerprint(program: Program, costs: list[ProgramCost]) -> str:
    """A hash of what every period's figures depend on besides the recorded activity: the
    program's time zone, margin, point cost and expiry, its costs and the cost sources."""
    data = {
        "program": [
            program.time_zone,
            str(program.gross_margin_rate),
            str(program.point_cost_amount),
            program.expiry_policy,
            program.expiry_months,
        ],
        "costs": [
            [
                c.pk,
                c.kind,
                str(c.cost_amount),
                str(c.starts_on),
                str(c.ends_on),
                c.amortisation_months,
            ]
            for c in costs
        ],
        "sources": sorted(kpis.COST_SOURCES),
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _local_days(queryset, field: str, tz) -> set[date]:
    return set(
        queryset.annotate(day=TruncDate(field, tzinfo=tz))
        .values_list("day", flat=True)
        .distinct()
        .order_by()
    )


@dataclass
class ChangedDays:
    """Local days whose figures what was recorded since a run may have changed."""

    # Purchases (by when they occurred), returns (their purchase's day), redemptions issued or
    # closed (by issue): that period changes, and the ones that read it.
    spot: set[date]
    # Ledger rows, enrolments, tier changes, returns (their own day): that period and every
    # later one, since liability, members and tiers are counted at the end of each period.
    lasting: set[date]


def changed_days(program: Program, *, since: datetime) -> ChangedDays:
    """The local days touched by what was recorded since `since`. Purchases and ledger rows
    are looked up from `since` minus the back-dating window, as far back as a POS may date
    them, so that the (program, time) indexes serve the lookups."""
    tz = program.tzinfo
    back = since - timedelta(days=program.backdating_days + 1)
    spot = _local_days(
        Purchase.objects.filter(program=program, occurred_at__gte=back, recorded_at__gte=since),
        "occurred_at",
        tz,
    )
    returns = PurchaseReturn.objects.filter(purchase__program=program, recorded_at__gte=since)
    spot |= _local_days(returns, "purchase__occurred_at", tz)
    spot |= _local_days(
        Redemption.objects.filter(program=program).filter(
            Q(issued_at__gte=since) | Q(closed_at__gte=since)
        ),
        "issued_at",
        tz,
    )
    lasting = _local_days(returns, "occurred_at", tz)
    lasting |= _local_days(
        PointsEntry.objects.filter(program=program, effective_at__gte=back, created_at__gte=since),
        "effective_at",
        tz,
    )
    lasting |= _local_days(
        Member.objects.filter(program=program, enrolled_at__gte=back, created_at__gte=since),
        "enrolled_at",
        tz,
    )
    lasting |= _local_days(
        TierChange.objects.filter(program=program, created_at__gte=since), "created_at", tz
    )
    return ChangedDays(spot, lasting)


def changed_periods(period_kind: str, days: ChangedDays, *, current: Period) -> list[Period]:
    """The periods up to `current` whose figures may differ from their snapshots because of
    the changed `days` (none when there are none): a spot day's period, the next one
    (retention, change on the previous period) and the one a year later (change on a year
    before); a lasting day's period and every later one."""
    periods = set()
    for day in days.spot:
        period = period_containing(period_kind, day)
        periods.add(period)
        periods.update(kpis.shifted_dependants(period))
    if days.lasting:
        periods.update(periods_between(period_kind, min(days.lasting), current.start))
    return sorted(p for p in periods if p <= current)


def write_periods(program: Program, results: list[kpis.PeriodResult]) -> None:
    """Store the figures of periods of one kind: upserts keyed by (program, period kind,
    period start, dimension, key, metric) and by cohort cell; rows no longer produced are
    deleted; the liability rows of the periods are replaced. One transaction, a few
    statements whatever the number of periods (a full recompute writes a few dozen at a
    time, rather than six statements for each of its periods)."""
    if not results:
        return
    kind = results[0].period.kind
    if any(r.period.kind != kind for r in results):
        raise ValueError("write_periods takes periods of one kind")
    starts = [r.period.start for r in results]
    rows = [
        KpiValue(
            program=program,
            period_kind=kind,
            period_start=r.period.start,
            period_end=r.period.end,
            dimension=f.dimension,
            dimension_key=f.key,
            store_id=f.store_id,
            metric=f.metric,
            value=f.value,
            numerator=f.numerator,
            denominator=f.denominator,
            inputs=f.inputs,
        )
        for r in results
        for f in r.figures
    ]
    keep = {(r.period.start, f.dimension, f.key, f.metric) for r in results for f in r.figures}
    with transaction.atomic():
        KpiValue.objects.bulk_create(
            rows,
            batch_size=WRITE_BATCH_ROWS,
            update_conflicts=True,
            unique_fields=FIGURE_KEY,
            update_fields=["period_end", "store", "value", "numerator", "denominator", "inputs"],
        )
        existing = KpiValue.objects.filter(
            program=program, period_kind=kind, period_start__in=starts
        ).values_list("pk", "period_start", "dimension", "dimension_key", "metric")
        stale = [pk for pk, *key in existing if tuple(key) not in keep]
        if stale:
            KpiValue.objects.filter(pk__in=stale).delete()

        KpiLiabilityByExpiry.objects.filter(
            program=program, period_kind=kind, period_start__in=starts
        ).delete()
        KpiLiabilityByExpiry.objects.bulk_create(
            (
                KpiLiabilityByExpiry(
                    program=program,
                    period_kind=kind,
                    period_start=r.period.start,
                    expiry_month=row.expiry_month,
                    points=row.points,
                    amount=row.amount,
                    expected_breakage_points=row.expected_breakage_points,
                    expected_breakage_amount=row.expected_breakage_amount,
                )
                for r in results
                for row in r.liability
            ),
            batch_size=WRITE_BATCH_ROWS,
        )

        if kind == PeriodKind.MONTH:
            _write_cohort_diagonals(program, results)


# Rows per INSERT statement of `write_periods`, and periods per call of a grouped recompute.
WRITE_BATCH_ROWS = 2000
WRITE_BATCH_PERIODS = 26


def _write_cohort_diagonals(program: Program, results: list[kpis.PeriodResult]) -> None:
    """The cohort cells of each month of `results` (the diagonal of the heatmap that ends in
    it); the cells of those diagonals no longer produced are deleted."""
    KpiCohort.objects.bulk_create(
        [
            KpiCohort(
                program=program,
                cohort_month=c.cohort_month,
                months_after=c.months_after,
                members=c.members,
                active=c.active,
                rate=c.rate,
            )
            for r in results
            for c in r.cohorts
        ],
        batch_size=WRITE_BATCH_ROWS,
        update_conflicts=True,
        unique_fields=CELL_KEY,
        update_fields=["members", "active", "rate"],
    )
    # The cohort months kept on the diagonal of each month written, by month index.
    kept = {kpis.month_index(r.period.start): {c.cohort_month for c in r.cohorts} for r in results}
    last = max(r.period.start for r in results)
    stale = [
        pk
        for pk, month, after in KpiCohort.objects.filter(
            program=program, cohort_month__lte=last
        ).values_list("pk", "cohort_month", "months_after")
        if (diagonal := kpis.month_index(month) + after) in kept and month not in kept[diagonal]
    ]
    if stale:
        KpiCohort.objects.filter(pk__in=stale).delete()


def _as_periods(period_kind: str, periods: Iterable) -> list[Period]:
    """Periods given as Period objects or as any local date inside them."""
    result = set()
    for item in periods:
        day = item.start if isinstance(item, Period) else item
        result.add(period_containing(period_kind, day))
    return sorted(result)


@dataclass
class _Unrecorded:
    """Stands for the JobRun of a run that the caller records itself (the nightly chain)."""

    pk: None = None
    summary: dict | None = None


@contextmanager
def _job_run(record: bool, *, dry_run: bool, user):
    if not record:
        yield _Unrecorded()
        return
    with record_job_run(JOB_NAME, dry_run=dry_run, user=user) as run:
        yield run


def _write_batch(program: Program, run, kind: str, results: list[kpis.PeriodResult]) -> None:
    """`write_periods`, then the run's progress."""
    if not results:
        return
    write_periods(program, results)
    run.summary["done"] += len(results)
    run.summary["kinds"][kind]["done"] += len(results)
    _save_progress(run)


def _save_progress(run) -> None:
    """The progress so far, on the run's JobRun, whose lease it renews."""
    if run.pk:
        save_progress(run)


def recompute(
    *,
    program: Program,
    period_kind: str = PeriodKind.MONTH,
    periods: Iterable | None = None,
    full: bool = False,
    now: datetime | None = None,
    user=None,
    dry_run: bool = False,
) -> dict:
    """Recompute the snapshots of `program` for one period kind (see `recompute_kinds`); the
    summary of that kind: mode, total and done periods, first and last period."""
    result = recompute_kinds(
        program=program,
        period_kinds=[period_kind],
        periods=periods,
        full=full,
        now=now,
        user=user,
        dry_run=dry_run,
    )
    return result["kinds"][period_kind]


def recompute_kinds(
    *,
    program: Program,
    period_kinds: Iterable[str] = ALL_KINDS,
    periods: Iterable | None = None,
    full: bool = False,
    now: datetime | None = None,
    user=None,
    dry_run: bool = False,
    record: bool = True,
) -> dict:
    """Recompute the snapshots of `program` for the period kinds given, up to the period of
    `now`: the `periods` given (Periods or dates in them), every period since the program's
    first activity (`full`, the first run of a kind, and after a change of costs or
    settings), or else the periods changed since the last run. One JobRun records the run
    and its progress (`done` of `total` periods), unless `record` is off (the caller records
    it: the nightly chain); a dry run only reports the periods."""
    kinds = list(dict.fromkeys(period_kinds))
    for kind in kinds:
        if kind not in PeriodKind.values:
            raise ValueError(f"unknown period kind {kind!r}")
    started = timezone.now()
    now = now or started
    today = timezone.localtime(now, program.tzinfo).date()
    costs = list(ProgramCost.objects.filter(program=program).order_by("pk"))
    fingerprint = settings_fingerprint(program, costs)
    refreshes = {
        r.period_kind: r for r in KpiRefresh.objects.filter(program=program, period_kind__in=kinds)
    }
    first_day = kpis.first_activity_day(program)

    def is_incremental(kind):
        refresh = refreshes.get(kind)
        return not full and refresh is not None and refresh.fingerprint == fingerprint

    days = None
    incremental = [k for k in kinds if periods is None and is_incremental(k)]
    if incremental and first_day is not None:
        since = min(refreshes[k].recorded_through for k in incremental) - SAFETY_MARGIN
        days = changed_days(program, since=since)

    plans: dict[str, list[Period]] = {}
    modes: dict[str, str] = {}
    for kind in kinds:
        current = period_containing(kind, today)
        if first_day is None:
            modes[kind], plans[kind] = ("periods" if periods is not None else "full"), []
            continue
        if periods is not None:
            modes[kind], plan = "periods", _as_periods(kind, periods)
        elif kind not in incremental:
            modes[kind], plan = "full", periods_between(kind, first_day, current.start)
        else:
            modes[kind], plan = "incremental", changed_periods(kind, days, current=current)
            # A period that has just begun has no snapshot yet; otherwise, nothing recorded
            # since the last run means nothing to recompute.
            if (
                current not in plan
                and not KpiValue.objects.filter(
                    program=program, period_kind=kind, period_start=current.start
                ).exists()
            ):
                plan.append(current)
        first = period_containing(kind, first_day)
        plans[kind] = [p for p in plan if first <= p <= current]

    with _job_run(record, dry_run=dry_run, user=user) as run:
        run.summary = {
            "program": program.slug,
            "total": sum(len(plan) for plan in plans.values()),
            "done": 0,
            "kinds": {
                kind: {
                    "mode": modes[kind],
                    "total": len(plan),
                    "done": 0,
                    "first": plan[0].start.isoformat() if plan else None,
                    "last": plan[-1].start.isoformat() if plan else None,
                }
                for kind, plan in plans.items()
            },
        }
        _save_progress(run)
        if dry_run:
            return run.summary
        # The month-end liability sums the ledger by month through the time zone: statistics
        # on that expression let PostgreSQL do it in parallel.
        if any(plans.values()):
            kpis.ensure_period_statistics([PeriodKind.MONTH])
        # Every kind's periods read together, whether every period (full) or those that
        # changed (incremental): the reads whose rows add up are read once, by day.
        planned = {kind: plan for kind, plan in plans.items() if plan}
        facts = (
            kpis.grouped_facts_of_kinds(program, planned, first_day=first_day, costs=costs)
            if planned
            else {}
        )
        for kind, plan in planned.items():
            # Written a few dozen periods at a time: the progress bar of a long recompute.
            for i in range(0, len(plan), WRITE_BATCH_PERIODS):
                batch = [
                    kpis.assemble(program, period, facts[kind][period])
                    for period in plan[i : i + WRITE_BATCH_PERIODS]
                ]
                _write_batch(program, run, kind, batch)
        # What was recorded before the run started is in; on a simulated later `now` (tests,
        # replays of nights), what the run itself wrote at `now` is in too.
        through = max(started, now)
        for kind in kinds:
            if modes[kind] == "periods":
                continue  # chosen periods do not stand for a complete run
            if kind in refreshes:
                KpiRefresh.objects.filter(pk=refreshes[kind].pk).update(
                    recorded_through=through, fingerprint=fingerprint, last_run=run.pk and run
                )
            else:
                KpiRefresh.objects.create(
                    program=program,
                    period_kind=kind,
                    recorded_through=through,
                    fingerprint=fingerprint,
                    last_run=run.pk and run,
                )
    return run.summary


def recompute_programs(
    *,
    programs=None,
    period_kinds: Iterable[str] = ALL_KINDS,
    full: bool = False,
    now: datetime | None = None,
    user=None,
    dry_run: bool = False,
) -> dict:
    """`recompute_kinds` for every active program (or those given); the summaries by program
    slug and period kind."""
    if programs is None:
        programs = Program.objects.filter(status=Program.Status.ACTIVE).order_by("pk")
    return {
        program.slug: recompute_kinds(
            program=program,
            period_kinds=period_kinds,
            full=full,
            now=now,
            user=user,
            dry_run=dry_run,
        )["kinds"]
        for program in programs
    }
