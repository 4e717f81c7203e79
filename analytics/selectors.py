"""What the staff dashboards read: the KPI snapshots of one program, period kind, period and
scope (the whole program, a store or a channel), as plain data (Decimal, int, dates, model
rows). analytics/views.py shapes them into the page's tables and CSV exports, and the
templates format them (analytics/templatetags/kpi_format.py). Only the snapshot tables are
read, never purchases or the ledger, and each function is one query whatever the number of
periods, stores or tiers.
"""

from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import F
from django.utils import timezone

from loyalty.models import JobRun, Program, Store, Tier

from .models import (
    Dimension,
    KpiCohort,
    KpiLiabilityByExpiry,
    KpiRefresh,
    KpiTarget,
    KpiValue,
    Metric,
    PeriodKind,
)
from .periods import Period, period_containing
from .services import JOB_NAME

# How many periods the trend charts and table cover (the chosen one and those before it).
TREND_PERIODS = 24
# How many enrolment months (rows) and months after enrolment (columns) the cohort table shows.
COHORT_MONTHS = 12

# The survey figures of DOMAIN.md: members spend 2 to 3 times the non-member average (60% of
# operators say so), at least 4 times (23%).
SURVEY_BAND_LOW = Decimal(2)
SURVEY_BAND_HIGH = Decimal(3)
SURVEY_BAND_TOP = Decimal(4)

# The trend table and charts.
TREND_METRICS = [
    Metric.ACTIVE_MEMBERS,
    Metric.NEW_MEMBERS,
    Metric.RETENTION_RATE,
    Metric.REPURCHASE_RATE,
    Metric.PURCHASE_FREQUENCY,
    Metric.REVENUE_MEMBER,
    Metric.REVENUE_NON_MEMBER,
    Metric.AVG_BASKET_MEMBER,
    Metric.AVG_BASKET_NON_MEMBER,
    Metric.SPEND_MULTIPLE,
    Metric.POINTS_ISSUED,
    Metric.POINTS_REDEEMED,
    Metric.POINTS_EXPIRED,
    Metric.LIABILITY_POINTS,
    Metric.LIABILITY_AMOUNT,
    Metric.PROGRAM_COST,
    Metric.ROI,
]
# Tables of the page, by the name their CSV export uses.
TABLES = ["kpis", "trends", "spend", "tiers", "liability", "cohorts"]


@dataclass(frozen=True)
class Scope:
    """The whole program, one store or one channel (the dimensions the snapshots have);
    `name` is the store's name or the channel's (empty for the whole program)."""

    dimension: str = Dimension.PROGRAM
    key: str = ""
    name: str = ""

    @property
    def value(self) -> str:
        return "" if self.dimension == Dimension.PROGRAM else f"{self.dimension}:{self.key}"

    @property
    def is_program(self) -> bool:
        return self.dimension == Dimension.PROGRAM


# Reads ------------------------------------------------------------------------------------------


def snapshot_periods(program: Program, period_kind: str) -> list[Period]:
    """The periods of `program` that have snapshots, newest first (one index-only query)."""
    starts = (
        KpiValue.objects.filter(
            program=program,
            period_kind=period_kind,
            metric=Metric.ACTIVE_MEMBERS,
            dimension=Dimension.PROGRAM,
        )
        .order_by("-period_start")
        .values_list("period_start", flat=True)
    )
    return [period_containing(period_kind, start) for start in starts]


def program_scopes(program: Program) -> list[Scope]:
    """The scopes the snapshots hold for `program`: the whole program, each store, each
    channel of its stores."""
    stores = list(Store.objects.filter(program=program).order_by("name", "pk"))
    scopes = [Scope()]
    scopes += [Scope(Dimension.STORE, str(s.pk), s.name) for s in stores]
    channels = dict(Store.Channel.choices)
    for code in sorted({s.channel for s in stores}):
        scopes.append(Scope(Dimension.CHANNEL, code, str(channels.get(code, code))))
    return scopes


def last_refresh(program: Program, period_kind: str) -> datetime | None:
    """When the snapshots of this period kind were last brought up to date (aware)."""
    refresh = (
        KpiRefresh.objects.filter(program=program, period_kind=period_kind)
        .select_related("last_run")
        .first()
    )
    if refresh is None:
        return None
    run = refresh.last_run
    return (run.finished_at or run.started_at) if run else refresh.recorded_through


def _values(program, period: Period, scope: Scope, **filters):
    return (
        KpiValue.objects.filter(
            program=program,
            period_kind=period.kind,
            dimension=scope.dimension,
            dimension_key=scope.key,
            **filters,
        )
        .only(
            "period_start", "metric", "value", "numerator", "denominator", "inputs", "dimension_key"
        )
        .order_by()
    )  # the model's ordering would join the program table


@dataclass(frozen=True)
class Figures:
    """One metric's snapshot for a period, with the same metric a period and a year before."""

    value: Decimal | None
    previous: Decimal | None
    year_ago: Decimal | None
    numerator: Decimal | None
    denominator: Decimal | None
    inputs: dict
    target: KpiTarget | None = None


def headline_figures(
    program: Program, period: Period, scope: Scope, metrics: list[str]
) -> dict[str, Figures]:
    """The `metrics` of `period` that have a snapshot, with the same figures of the previous
    period and a year before, and the program's targets (whole-program scope only). Two
    queries."""
    previous, year_ago = period.shift(-1), period.year_before()
    by_key = {
        (v.period_start, v.metric): v
        for v in _values(
            program,
            period,
            scope,
            period_start__in=[period.start, previous.start, year_ago.start],
            metric__in=list(metrics),
        )
    }
    targets = {}
    if scope.is_program:
        targets = {t.metric: t for t in KpiTarget.objects.filter(program=program)}
    figures = {}
    for metric in metrics:
        current = by_key.get((period.start, metric))
        if current is None:
            continue
        before = by_key.get((previous.start, metric))
        year = by_key.get((year_ago.start, metric))
        figures[metric] = Figures(
            value=current.value,
            previous=before.value if before else None,
            year_ago=year.value if year else None,
            numerator=current.numerator,
            denominator=current.denominator,
            inputs=current.inputs,
            target=targets.get(metric),
        )
    return figures


@dataclass
class Trends:
    periods: list[Period]
    series: dict[str, list[Decimal | None]]  # metric -> one value per period


def trends(program: Program, period: Period, scope: Scope) -> Trends:
    """The trend metrics over the last TREND_PERIODS periods up to `period` (those that have
    snapshots), one query."""
    first = period.shift(-(TREND_PERIODS - 1))
    values = _values(
        program,
        period,
        scope,
        period_start__gte=first.start,
        period_start__lte=period.start,
        metric__in=TREND_METRICS,
    ).order_by("period_start")
    by_start: dict[date, dict[str, Decimal | None]] = {}
    for v in values:
        by_start.setdefault(v.period_start, {})[v.metric] = v.value
    periods = [period_containing(period.kind, start) for start in sorted(by_start)]
    present = {metric for row in by_start.values() for metric in row}
    series = {
        metric: [by_start[p.start].get(metric) for p in periods]
        for metric in TREND_METRICS
        if metric in present
    }
    return Trends(periods, series)


@dataclass(frozen=True)
class TierCount:
    """Members in a tier at the end of a period. `tier_key` is the tier's id as the snapshot
    holds it ("" for members without a tier); `name` is None when the tier is gone."""

    tier_key: str
    name: str | None
    members: int


def tier_counts(program: Program, period: Period) -> list[TierCount]:
    """Members per tier at the end of `period`: the program's tiers in rank order, then the
    members without a tier, then tiers deleted since the snapshot by id (two queries)."""
    counts = {
        v.dimension_key: v.value
        for v in KpiValue.objects.filter(
            program=program,
            period_kind=period.kind,
            period_start=period.start,
            dimension=Dimension.TIER,
            metric=Metric.TIER_MEMBERS,
        )
        .only("dimension_key", "value")
        .order_by()
    }
    rows: list[TierCount] = []
    if not counts:
        return rows
    for tier in Tier.objects.filter(program=program).order_by("rank", "pk"):
        if str(tier.pk) in counts:
            rows.append(TierCount(str(tier.pk), tier.name, int(counts.pop(str(tier.pk)))))
    if "" in counts:
        rows.append(TierCount("", None, int(counts.pop(""))))
    rows += [TierCount(key, None, int(value)) for key, value in sorted(counts.items())]
    return rows


def liability_by_expiry(program: Program, period: Period) -> list[KpiLiabilityByExpiry]:
    """Outstanding points at the end of `period` by the month they expire in (points that
    never expire last), with the expected breakage (one query)."""
    return list(
        KpiLiabilityByExpiry.objects.filter(
            program=program, period_kind=period.kind, period_start=period.start
        ).order_by(F("expiry_month").asc(nulls_last=True))
    )


@dataclass
class CohortRow:
    month: date
    members: int
    cells: list  # (rate, active) or None per month after enrolment


def cohort_rows(program: Program, period: Period) -> list[CohortRow]:
    """Cohort retention of the COHORT_MONTHS enrolment months up to the month `period` ends
    in, for 0 to COHORT_MONTHS - 1 months after enrolment (one query)."""
    last_month = period_containing(PeriodKind.MONTH, period.end).shift(-1)
    first_month = last_month.shift(-(COHORT_MONTHS - 1))
    cells = KpiCohort.objects.filter(
        program=program,
        cohort_month__gte=first_month.start,
        cohort_month__lte=last_month.start,
        months_after__lt=COHORT_MONTHS,
    ).order_by("cohort_month", "months_after")
    rows: dict[date, CohortRow] = {}
    for cell in cells:
        row = rows.get(cell.cohort_month)
        if row is None:
            row = rows[cell.cohort_month] = CohortRow(
                cell.cohort_month, cell.members, [None] * COHORT_MONTHS
            )
        row.members = cell.members if cell.months_after == 0 else row.members
        row.cells[cell.months_after] = (cell.rate, cell.active)
    return list(rows.values())


# Recompute progress -----------------------------------------------------------------------------


def recompute_progress(*, since: datetime, user, expected_runs: int) -> dict:
    """Where the recomputes a staff user started at `since` stand: one JobRun per program
    (analytics.services.recompute_kinds), recording `done` of `total` periods in all and per
    period kind."""
    runs = list(
        JobRun.objects.filter(name=JOB_NAME, started_at__gte=since, triggered_by=user)
        .order_by("started_at", "pk")
        .only("pk", "status", "summary", "started_at", "finished_at", "lease_expires_at")[:500]
    )
    items, fraction = [], Decimal(0)
    for run in runs:
        summary = run.summary or {}
        done, total = int(summary.get("done") or 0), int(summary.get("total") or 0)
        # A run whose worker died (its lease expired) is over: abandoned.
        status = run.shown_status
        finished = status != JobRun.Status.RUNNING
        if finished or not total:
            part = Decimal(1) if finished else Decimal(0)
        else:
            part = Decimal(done) / Decimal(total)
        fraction += part
        # In PeriodKind order (jsonb does not keep the keys' order).
        kinds = summary.get("kinds") or {}
        kinds = {kind: kinds[kind] for kind in PeriodKind.values if kind in kinds}
        items.append(
            {
                "id": run.pk,
                "program": summary.get("program"),
                "kinds": ", ".join(
                    f"{kind} {k.get('done', 0)}/{k.get('total', 0)}" for kind, k in kinds.items()
                ),
                "status": status,
                "status_label": str(JobRun.Status(status).label),
                "done": done,
                "total": total,
            }
        )
    expected = max(expected_runs, len(runs), 1)
    failed = any(
        item["status"] in (JobRun.Status.FAILED, JobRun.Status.ABANDONED) for item in items
    )
    finished_runs = sum(item["status"] != JobRun.Status.RUNNING for item in items)
    return {
        "runs": items,
        "expected_runs": expected,
        "percent": int((fraction * 100 / expected).to_integral_value(ROUND_HALF_UP)),
        "finished": failed or finished_runs >= expected,
        "failed": failed,
        "now": timezone.now().isoformat(),
    }
