# The formulas and figures shown to staff use typographic signs (times, minus, dashes).
# ruff: noqa: RUF001, RUF002
"""What the staff dashboards read: the KPI snapshots of one program, period kind, period and
scope (the whole program, a store or a channel), shaped as the page's tables. The CSV exports
write the same rows. Only the snapshot tables are read, never purchases or the ledger, and each
function is one query whatever the number of periods, stores or tiers.

Comparisons with the previous period and a year before are differences of stored figures; no
KPI is computed here.
"""

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import F
from django.utils import timezone
from django.utils.formats import date_format, number_format
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

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

PERCENT, MONEY, RATIO, MULTIPLE, COUNT = "percent", "money", "ratio", "multiple", "count"

# The headline table: groups of metrics in the order staff read them, with how each is shown.
HEADLINE_GROUPS = [
    (
        _("Members"),
        [
            (Metric.MEMBERS_TOTAL, COUNT),
            (Metric.NEW_MEMBERS, COUNT),
            (Metric.ACTIVE_MEMBERS, COUNT),
            (Metric.RETENTION_RATE, PERCENT),
            (Metric.ATTRITION_RATE, PERCENT),
            (Metric.REPURCHASE_RATE, PERCENT),
            (Metric.PURCHASE_FREQUENCY, RATIO),
        ],
    ),
    (
        _("Sales"),
        [
            (Metric.REVENUE_TOTAL, MONEY),
            (Metric.REVENUE_MEMBER, MONEY),
            (Metric.REVENUE_NON_MEMBER, MONEY),
            (Metric.MEMBER_REVENUE_SHARE, PERCENT),
            (Metric.PURCHASES_MEMBER, COUNT),
            (Metric.PURCHASES_NON_MEMBER, COUNT),
            (Metric.AVG_BASKET_MEMBER, MONEY),
            (Metric.AVG_BASKET_NON_MEMBER, MONEY),
            (Metric.SPEND_PER_MEMBER, MONEY),
            (Metric.SPEND_MULTIPLE, MULTIPLE),
        ],
    ),
    (
        _("Points"),
        [
            (Metric.POINTS_ISSUED, COUNT),
            (Metric.POINTS_REDEEMED, COUNT),
            (Metric.POINTS_EXPIRED, COUNT),
            (Metric.POINTS_ADJUSTED, COUNT),
            (Metric.REDEMPTION_RATE, PERCENT),
            (Metric.BREAKAGE_RATE, PERCENT),
            (Metric.LIABILITY_POINTS, COUNT),
            (Metric.LIABILITY_AMOUNT, MONEY),
        ],
    ),
    (
        _("Costs and return on investment"),
        [
            (Metric.REWARD_COST, MONEY),
            (Metric.PROGRAM_COST, MONEY),
            (Metric.INCREMENTAL_REVENUE, MONEY),
            (Metric.INCREMENTAL_GROSS_MARGIN, MONEY),
            (Metric.ROI, PERCENT),
        ],
    ),
]
DISPLAY = {metric: kind for _group, metrics in HEADLINE_GROUPS for metric, kind in metrics}
DISPLAY.update(
    {
        Metric.MEMBER_REVENUE_POP: PERCENT,
        Metric.MEMBER_REVENUE_YOY: PERCENT,
        Metric.TIER_MEMBERS: COUNT,
    }
)

# How each figure is computed (docs/kpis.md), and what its numerator and denominator hold.
FORMULAS = {
    Metric.MEMBERS_TOTAL: _("Members enrolled before the end of the period."),
    Metric.NEW_MEMBERS: _("Members enrolled in the period."),
    Metric.ACTIVE_MEMBERS: _(
        "Members with at least one purchase in the period (a purchase returned in full does "
        "not count)."
    ),
    Metric.RETENTION_RATE: _(
        "Members active in the previous period and in this one ÷ members active in the "
        "previous period × 100."
    ),
    Metric.ATTRITION_RATE: _(
        "100 − retention rate: members active in the previous period and not in this one ÷ "
        "members active in the previous period × 100."
    ),
    Metric.REPURCHASE_RATE: _(
        "Members with at least two purchases in the period ÷ active members × 100."
    ),
    Metric.PURCHASE_FREQUENCY: _("Member purchases ÷ active members."),
    Metric.REVENUE_TOTAL: _("Member revenue + non-member revenue, net of returns."),
    Metric.REVENUE_MEMBER: _(
        "Amounts of the purchases made with a member card in the period, less what was "
        "returned of them."
    ),
    Metric.REVENUE_NON_MEMBER: _(
        "Amounts of the anonymous purchases in the period, less what was returned of them."
    ),
    Metric.MEMBER_REVENUE_SHARE: _("Member revenue ÷ all revenue × 100."),
    Metric.PURCHASES_MEMBER: _("Purchases with a member card, not returned in full."),
    Metric.PURCHASES_NON_MEMBER: _("Anonymous purchases, not returned in full."),
    Metric.AVG_BASKET_MEMBER: _("Member revenue ÷ member purchases."),
    Metric.AVG_BASKET_NON_MEMBER: _("Non-member revenue ÷ non-member purchases."),
    Metric.SPEND_PER_MEMBER: _("Member revenue ÷ active members."),
    Metric.SPEND_MULTIPLE: _(
        "(Member revenue ÷ active members) ÷ (non-member revenue ÷ non-member purchases): what "
        "an active member spends in the period against one non-member visit. Survey figures: "
        "60 per cent of operators say members spend 2 to 3 times the non-member average, 23 per "
        "cent at least 4 times."
    ),
    Metric.MEMBER_REVENUE_POP: _(
        "(Member revenue − member revenue of the previous period) ÷ member revenue of the "
        "previous period × 100."
    ),
    Metric.MEMBER_REVENUE_YOY: _(
        "(Member revenue − member revenue a year before) ÷ member revenue a year before × 100."
    ),
    Metric.POINTS_ISSUED: _(
        "Points earned on purchases net of returns, plus bonuses, effective in the period."
    ),
    Metric.POINTS_REDEEMED: _("Points spent on rewards, less the points given back."),
    Metric.POINTS_EXPIRED: _("Points that expired in the period."),
    Metric.POINTS_ADJUSTED: _("Points added (or removed, when negative) by staff."),
    Metric.REDEMPTION_RATE: _("Points redeemed ÷ points issued × 100."),
    Metric.BREAKAGE_RATE: _("Points expired ÷ points issued × 100."),
    Metric.LIABILITY_POINTS: _(
        "Outstanding points (available + pending) at the end of the period."
    ),
    Metric.LIABILITY_AMOUNT: _(
        "Outstanding points at the end of the period × the cost of one point. Expected "
        "breakage: outstanding points × the points expired to date ÷ the points issued to date."
    ),
    Metric.REWARD_COST: _(
        "What the rewards redeemed in the period cost the business (vouchers whose points "
        "were given back cost nothing)."
    ),
    Metric.PROGRAM_COST: _(
        "Amortised one-off costs + recurring costs + reward costs (+ campaign costs)."
    ),
    Metric.INCREMENTAL_REVENUE: _(
        "Member revenue − active members × the average non-member basket (what members spent "
        "above the non-member baseline)."
    ),
    Metric.INCREMENTAL_GROSS_MARGIN: _("Incremental revenue × the program's gross margin rate."),
    Metric.ROI: _(
        "(Incremental gross margin − program cost) ÷ program cost × 100. Method: member "
        "against non-member baseline spend. Incremental revenue = member revenue − active "
        "members × (non-member revenue ÷ non-member purchases); incremental gross margin = "
        "incremental revenue × gross margin rate."
    ),
    Metric.TIER_MEMBERS: _("Members in the tier at the end of the period."),
}
OPERANDS = {
    Metric.RETENTION_RATE: (_("Members active in both periods"), _("Active the period before")),
    Metric.ATTRITION_RATE: (_("Members lost"), _("Active the period before")),
    Metric.REPURCHASE_RATE: (_("Members with two purchases or more"), _("Active members")),
    Metric.PURCHASE_FREQUENCY: (_("Member purchases"), _("Active members")),
    Metric.REVENUE_TOTAL: (_("Member revenue"), _("Non-member revenue")),
    Metric.MEMBER_REVENUE_SHARE: (_("Member revenue"), _("All revenue")),
    Metric.AVG_BASKET_MEMBER: (_("Member revenue"), _("Member purchases")),
    Metric.AVG_BASKET_NON_MEMBER: (_("Non-member revenue"), _("Non-member purchases")),
    Metric.SPEND_PER_MEMBER: (_("Member revenue"), _("Active members")),
    Metric.SPEND_MULTIPLE: (_("Spend per active member"), _("Average non-member basket")),
    Metric.MEMBER_REVENUE_POP: (_("Member revenue"), _("The previous period")),
    Metric.MEMBER_REVENUE_YOY: (_("Member revenue"), _("A year before")),
    Metric.REDEMPTION_RATE: (_("Points redeemed"), _("Points issued")),
    Metric.BREAKAGE_RATE: (_("Points expired"), _("Points issued")),
    Metric.LIABILITY_AMOUNT: (_("Outstanding points"), _("Cost of one point")),
    Metric.INCREMENTAL_GROSS_MARGIN: (_("Incremental revenue"), _("Gross margin rate")),
    Metric.ROI: (_("Incremental gross margin − program cost"), _("Program cost")),
}
INPUT_LABELS = {
    "method": _("Attribution method"),
    "member_revenue": _("Member revenue"),
    "active_members": _("Active members"),
    "non_member_revenue": _("Non-member revenue"),
    "non_member_purchases": _("Non-member purchases"),
    "baseline_basket": _("Average non-member basket (baseline)"),
    "incremental_revenue": _("Incremental revenue"),
    "gross_margin_rate": _("Gross margin rate"),
    "incremental_gross_margin": _("Incremental gross margin"),
    "program_cost": _("Program cost"),
    "costs": _("Costs"),
    "one_off_amortised": _("one-off costs, amortised"),
    "recurring": _("recurring costs"),
    "rewards": _("reward costs"),
    "campaigns": _("campaign costs"),
    "point_cost_amount": _("Cost of one point"),
    "outstanding_points": _("Outstanding points"),
    "points_issued_to_date": _("Points issued to date"),
    "points_expired_to_date": _("Points expired to date"),
    "expected_breakage_points": _("Expected breakage (points)"),
    "expected_breakage_amount": _("Expected breakage"),
    "by_kind": _("Ledger points by kind"),
}
INPUT_VALUES = {
    "member_vs_baseline_spend": _(
        "member against non-member baseline spend (members' spend above what as many "
        "non-member visits bring)"
    ),
}
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
    """The whole program, one store or one channel (the dimensions the snapshots have)."""

    dimension: str = Dimension.PROGRAM
    key: str = ""
    label: str = ""

    @property
    def value(self) -> str:
        return "" if self.dimension == Dimension.PROGRAM else f"{self.dimension}:{self.key}"

    @property
    def is_program(self) -> bool:
        return self.dimension == Dimension.PROGRAM


TEXT = "text"


@dataclass
class Table:
    """One table of the page and of its CSV export: headers and rows of raw values
    (Decimal, int, str, date or None); `kinds` says how the page shows each column."""

    name: str
    title: str
    headers: list[str]
    kinds: list[str]
    rows: list[list] = field(default_factory=list)
    currency: str = ""

    @property
    def display_rows(self) -> list[list[str]]:
        return [
            [
                show(cell, kind, self.currency) if kind != TEXT else _text(cell)
                for cell, kind in zip(row, self.kinds, strict=True)
            ]
            for row in self.rows
        ]


def _text(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


@dataclass
class Headline:
    group: str
    metric: str
    label: str
    display_kind: str
    value: Decimal | None
    previous: Decimal | None
    year_ago: Decimal | None
    numerator: Decimal | None
    denominator: Decimal | None
    inputs: dict
    currency: str
    target: KpiTarget | None = None

    @property
    def formula(self) -> str:
        return FORMULAS.get(self.metric, "")

    @property
    def operands(self):
        labels = OPERANDS.get(self.metric)
        if not labels or (self.numerator is None and self.denominator is None):
            return None
        return [(labels[0], plain(self.numerator)), (labels[1], plain(self.denominator))]

    @property
    def input_rows(self) -> list[tuple[str, str]]:
        return flatten_inputs(self.inputs)

    @property
    def display(self) -> str:
        return show(self.value, self.display_kind, self.currency)

    @property
    def previous_display(self) -> str:
        return show(self.previous, self.display_kind, self.currency)

    @property
    def year_ago_display(self) -> str:
        return show(self.year_ago, self.display_kind, self.currency)

    @property
    def change_on_previous(self) -> Decimal | None:
        return change(self.value, self.previous, self.display_kind)

    @property
    def change_on_year_ago(self) -> Decimal | None:
        return change(self.value, self.year_ago, self.display_kind)

    @property
    def change_on_previous_display(self) -> str:
        return show_change(self.change_on_previous, self.display_kind)

    @property
    def change_on_year_ago_display(self) -> str:
        return show_change(self.change_on_year_ago, self.display_kind)

    @property
    def is_on_target(self) -> bool | None:
        return None if self.target is None else self.target.is_met(self.value)

    @property
    def gap(self) -> Decimal | None:
        return None if self.target is None else self.target.gap(self.value)

    @property
    def target_display(self) -> str:
        if self.target is None:
            return ""
        return show(self.target.target_value, self.display_kind, self.currency)

    @property
    def gap_display(self) -> str:
        gap = self.gap
        if gap is None:
            return "–"
        sign = "+" if gap > 0 else ""
        return sign + show(gap, self.display_kind, self.currency)


# Formatting -------------------------------------------------------------------------------------


def plain(value) -> str:
    """A raw figure as stored, without trailing zeros of the 4-decimal columns."""
    if value is None:
        return "–"
    if isinstance(value, Decimal):
        value = value.normalize() if value == value.to_integral() else value
        text = format(value, "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    return str(value)


def show(value, display_kind: str, currency: str = "") -> str:
    """A figure as the page shows it, in the active language's number format."""
    if value is None:
        return "–"
    if display_kind == COUNT:
        return number_format(value, 0, force_grouping=True)
    text = number_format(value, 2, force_grouping=True)
    if display_kind == MONEY:
        return f"{text} {currency}".strip()
    if display_kind == PERCENT:
        return f"{text} %"
    if display_kind == MULTIPLE:
        return f"{text}×"
    return text


def change(value, before, display_kind: str) -> Decimal | None:
    """The change from `before` to `value`: in percentage points for a percentage, in % of
    `before` otherwise (none when `before` is missing or 0)."""
    if value is None or before is None:
        return None
    if display_kind == PERCENT:
        return (value - before).quantize(Decimal("0.01"), ROUND_HALF_UP)
    if not before:
        return None
    return ((value - before) * 100 / abs(before)).quantize(Decimal("0.1"), ROUND_HALF_UP)


def show_change(delta, display_kind: str) -> str:
    if delta is None:
        return "–"
    sign = "+" if delta > 0 else ""
    if display_kind == PERCENT:
        return gettext("%(change)s pts") % {"change": sign + number_format(delta, 2)}
    return f"{sign}{number_format(delta, 1)} %"


def flatten_inputs(inputs: dict, prefix: str = "") -> list[tuple[str, str]]:
    """The inputs JSON of a figure as (label, value) lines, nested objects indented by name."""
    rows = []
    for key, value in (inputs or {}).items():
        label = str(INPUT_LABELS.get(key, key))
        if prefix:
            label = f"{prefix} › {label}"
        if isinstance(value, dict):
            rows += flatten_inputs(value, label)
        else:
            text = "–" if value is None else str(INPUT_VALUES.get(value, value))
            rows.append((label, text))
    return rows


def period_label(period: Period) -> str:
    """'November 2026', 'Q4 2026', 'Week of 16 Nov. 2026', in the active language."""
    if period.kind == PeriodKind.MONTH:
        return date_format(period.start, "F Y")
    if period.kind == PeriodKind.QUARTER:
        return gettext("Q%(quarter)d %(year)d") % {
            "quarter": (period.start.month - 1) // 3 + 1,
            "year": period.start.year,
        }
    return gettext("Week of %(day)s") % {"day": date_format(period.start, "j M Y")}


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
    scopes = [Scope(label=gettext("Whole program"))]
    scopes += [Scope(Dimension.STORE, str(s.pk), s.name) for s in stores]
    channels = dict(Store.Channel.choices)
    for code in sorted({s.channel for s in stores}):
        label = gettext("Channel: %(channel)s") % {"channel": channels.get(code, code)}
        scopes.append(Scope(Dimension.CHANNEL, code, label))
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


def headlines(program: Program, period: Period, scope: Scope) -> list[Headline]:
    """The headline figures of `period` with the same figures of the previous period and a
    year before, and the program's targets (whole-program scope only). Two queries."""
    previous, year_ago = period.shift(-1), period.year_before()
    by_key = {
        (v.period_start, v.metric): v
        for v in _values(
            program,
            period,
            scope,
            period_start__in=[period.start, previous.start, year_ago.start],
            metric__in=list(DISPLAY),
        )
    }
    targets = {}
    if scope.is_program:
        targets = {t.metric: t for t in KpiTarget.objects.filter(program=program)}
    labels = dict(Metric.choices)
    rows = []
    for group, metrics in HEADLINE_GROUPS:
        for metric, kind in metrics:
            current = by_key.get((period.start, metric))
            if current is None:
                continue
            before = by_key.get((previous.start, metric))
            year = by_key.get((year_ago.start, metric))
            rows.append(
                Headline(
                    group=str(group),
                    metric=metric,
                    label=str(labels[metric]),
                    display_kind=kind,
                    value=current.value,
                    previous=before.value if before else None,
                    year_ago=year.value if year else None,
                    numerator=current.numerator,
                    denominator=current.denominator,
                    inputs=current.inputs,
                    currency=program.currency,
                    target=targets.get(metric),
                )
            )
    return rows


def headline_table(rows: list[Headline]) -> Table:
    """The headline figures as a table of raw values (the CSV export of the overview)."""
    table = Table(
        "kpis",
        gettext("Key figures"),
        [
            gettext("Group"),
            gettext("Metric"),
            gettext("Code"),
            gettext("Value"),
            gettext("Previous period"),
            gettext("Change on previous period"),
            gettext("A year before"),
            gettext("Change on a year before"),
            gettext("Target"),
            gettext("On target"),
            gettext("Gap to target"),
            gettext("Numerator"),
            gettext("Denominator"),
            gettext("Formula"),
            gettext("Inputs"),
        ],
        [TEXT] * 15,
    )
    for row in rows:
        on_target = row.is_on_target
        table.rows.append(
            [
                row.group,
                row.label,
                row.metric,
                row.value,
                row.previous,
                row.change_on_previous,
                row.year_ago,
                row.change_on_year_ago,
                None if row.target is None else row.target.target_value,
                None if on_target is None else (gettext("yes") if on_target else gettext("no")),
                row.gap,
                row.numerator,
                row.denominator,
                str(row.formula),
                "; ".join(f"{label}: {value}" for label, value in row.input_rows),
            ]
        )
    return table


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


def trend_table(data: Trends, currency: str) -> Table:
    labels = dict(Metric.choices)
    table = Table(
        "trends",
        gettext("Trends"),
        [gettext("Period"), gettext("Period start")] + [str(labels[m]) for m in data.series],
        [TEXT, TEXT] + [DISPLAY[m] for m in data.series],
        currency=currency,
    )
    for i, period in enumerate(data.periods):
        table.rows.append(
            [period_label(period), period.start] + [values[i] for values in data.series.values()]
        )
    return table


def spend_table(data: Trends) -> Table:
    """The spend multiple of each period against the survey bands."""
    table = Table(
        "spend",
        gettext("Members' spend against the survey bands"),
        [
            gettext("Period"),
            gettext("Period start"),
            gettext("Spend multiple"),
            gettext("Survey band"),
        ],
        [TEXT, TEXT, MULTIPLE, TEXT],
    )
    for period, value in zip(
        data.periods, data.series.get(Metric.SPEND_MULTIPLE, []), strict=False
    ):
        table.rows.append([period_label(period), period.start, value, survey_band(value)])
    return table


def survey_band(multiple: Decimal | None) -> str:
    """Where a spend multiple stands against the survey figures (2–3×: 60% of operators; at
    least 4×: 23%)."""
    if multiple is None:
        return "–"
    if multiple >= SURVEY_BAND_TOP:
        return gettext("at least 4× (survey of operators: 23%)")
    if multiple > SURVEY_BAND_HIGH:
        return gettext("between 3× and 4×")
    if multiple >= SURVEY_BAND_LOW:
        return gettext("2–3× (survey of operators: 60%)")
    return gettext("below 2×")


def tier_table(program: Program, period: Period) -> Table:
    """Members per tier at the end of `period`, in tier order (two queries)."""
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
    table = Table(
        "tiers", gettext("Members per tier"), [gettext("Tier"), gettext("Members")], [TEXT, COUNT]
    )
    if not counts:
        return table
    for tier in Tier.objects.filter(program=program).order_by("rank", "pk"):
        if str(tier.pk) in counts:
            table.rows.append([tier.name, int(counts.pop(str(tier.pk)))])
    if "" in counts:
        table.rows.append([gettext("No tier"), int(counts.pop(""))])
    # Tiers deleted since the snapshot: shown by their id rather than hidden.
    for key, value in sorted(counts.items()):
        table.rows.append([gettext("Tier #%(id)s") % {"id": key}, int(value)])
    return table


def liability_table(program: Program, period: Period) -> Table:
    """Outstanding points at the end of `period` by the month they expire in, with the
    expected breakage (one query)."""
    table = Table(
        "liability",
        gettext("Outstanding points by expiry month"),
        [
            gettext("Expiry month"),
            gettext("Outstanding points"),
            gettext("Liability"),
            gettext("Expected breakage (points)"),
            gettext("Expected breakage"),
        ],
        [TEXT, COUNT, MONEY, COUNT, MONEY],
        currency=program.currency,
    )
    rows = KpiLiabilityByExpiry.objects.filter(
        program=program, period_kind=period.kind, period_start=period.start
    ).order_by(F("expiry_month").asc(nulls_last=True))
    for row in rows:
        table.rows.append(
            [
                row.expiry_month.strftime("%Y-%m") if row.expiry_month else gettext("never"),
                row.points,
                row.amount,
                row.expected_breakage_points,
                row.expected_breakage_amount,
            ]
        )
    return table


@dataclass
class CohortRow:
    month: date
    members: int
    cells: list  # (rate, active, shade) or None per month after enrolment


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
        row.cells[cell.months_after] = (cell.rate, cell.active, heat_class(cell.rate))
    return list(rows.values())


def cohort_table(rows: list[CohortRow]) -> Table:
    table = Table(
        "cohorts",
        gettext("Cohort retention (share of the members enrolled in the month who bought, %)"),
        [gettext("Enrolment month"), gettext("Members")]
        + [gettext("Month +%(n)d") % {"n": n} for n in range(COHORT_MONTHS)],
        [TEXT, COUNT] + [PERCENT] * COHORT_MONTHS,
    )
    for row in rows:
        table.rows.append(
            [row.month.strftime("%Y-%m"), row.members]
            + [None if cell is None else cell[0] for cell in row.cells]
        )
    return table


def heat_class(rate: Decimal | None) -> str:
    """The shade of a cohort cell: heat-0 (0-9 %) to heat-10 (100 %)."""
    if rate is None:
        return "heat-none"
    return f"heat-{min(int(rate // 10), 10)}"


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
