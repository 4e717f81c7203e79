# The formulas and figures shown to staff use typographic signs (times, minus, dashes).
# ruff: noqa: RUF001, RUF002
"""The staff dashboards (/staff/): the KPI overview of a program with its charts, and the CSV
export of each of its tables. Staff only; they read the snapshots (analytics.selectors), never
the raw purchases or ledger. The selectors return data; the labels, groups and formulas of the
figures and the tables of the page and its CSV exports are made here, and the figures are
formatted by analytics/templatetags/kpi_format.py."""

import csv
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from functools import wraps

from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET

from loyalty.models import Program

from . import selectors
from .forms import DashboardFilterForm
from .models import KpiTarget, Metric
from .periods import Period
from .selectors import Scope
from .templatetags.kpi_format import (
    COUNT,
    MONEY,
    MULTIPLE,
    PERCENT,
    RATIO,
    TEXT,
    period_label,
    plain,
    show,
    show_change,
    show_text,
)

VIEW_PERMISSION = "analytics.view_kpivalue"


# What the page shows and the CSV exports write -------------------------------------------

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
                show(cell, kind, self.currency) if kind != TEXT else show_text(cell)
                for cell, kind in zip(row, self.kinds, strict=True)
            ]
            for row in self.rows
        ]


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


def headlines(program: Program, period: Period, scope: Scope) -> list[Headline]:
    """The headline figures of `period`, in HEADLINE_GROUPS order, with the previous period,
    a year before and the program's targets (selectors.headline_figures)."""
    figures = selectors.headline_figures(program, period, scope, list(DISPLAY))
    labels = dict(Metric.choices)
    rows = []
    for group, metrics in HEADLINE_GROUPS:
        for metric, kind in metrics:
            figure = figures.get(metric)
            if figure is None:
                continue
            rows.append(
                Headline(
                    group=str(group),
                    metric=metric,
                    label=str(labels[metric]),
                    display_kind=kind,
                    value=figure.value,
                    previous=figure.previous,
                    year_ago=figure.year_ago,
                    numerator=figure.numerator,
                    denominator=figure.denominator,
                    inputs=figure.inputs,
                    currency=program.currency,
                    target=figure.target,
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


def trend_table(data: selectors.Trends, currency: str) -> Table:
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


def spend_table(data: selectors.Trends) -> Table:
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
    if multiple >= selectors.SURVEY_BAND_TOP:
        return gettext("at least 4× (survey of operators: 23%)")
    if multiple > selectors.SURVEY_BAND_HIGH:
        return gettext("between 3× and 4×")
    if multiple >= selectors.SURVEY_BAND_LOW:
        return gettext("2–3× (survey of operators: 60%)")
    return gettext("below 2×")


def tier_table(rows: list[selectors.TierCount]) -> Table:
    """Members per tier, in tier order; tiers deleted since the snapshot by their id."""
    table = Table(
        "tiers", gettext("Members per tier"), [gettext("Tier"), gettext("Members")], [TEXT, COUNT]
    )
    for row in rows:
        if row.name is not None:
            name = row.name
        elif row.tier_key == "":
            name = gettext("No tier")
        else:
            name = gettext("Tier #%(id)s") % {"id": row.tier_key}
        table.rows.append([name, row.members])
    return table


def liability_table(rows, currency: str) -> Table:
    """Outstanding points by expiry month with the expected breakage
    (selectors.liability_by_expiry)."""
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
        currency=currency,
    )
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


def cohort_table(rows: list[selectors.CohortRow]) -> Table:
    table = Table(
        "cohorts",
        gettext("Cohort retention (share of the members enrolled in the month who bought, %)"),
        [gettext("Enrolment month"), gettext("Members")]
        + [gettext("Month +%(n)d") % {"n": n} for n in range(selectors.COHORT_MONTHS)],
        [TEXT, COUNT] + [PERCENT] * selectors.COHORT_MONTHS,
    )
    for row in rows:
        table.rows.append(
            [row.month.strftime("%Y-%m"), row.members]
            + [None if cell is None else cell[0] for cell in row.cells]
        )
    return table


def staff_dashboard(view):
    """Staff who may view the KPI snapshots; anyone else goes to the admin login (anonymous,
    not staff) or is refused (staff without the permission)."""

    @staff_member_required
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not request.user.has_perm(VIEW_PERMISSION):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return wrapped


def _filters(request) -> DashboardFilterForm:
    programs = list(Program.objects.order_by("name", "pk"))
    form = DashboardFilterForm(request.GET, programs=programs)
    form.is_valid()
    return form


def dashboard_data(form: DashboardFilterForm) -> dict:
    """Everything the overview shows for valid filters with a period: the headline figures,
    the page's tables (the CSV exports) and the charts' data."""
    program = form.cleaned_data["program"]
    period = form.cleaned_data["period"]
    scope = form.cleaned_data["scope"]
    rows = headlines(program, period, scope)
    trend = selectors.trends(program, period, scope)
    tables = {
        "kpis": headline_table(rows),
        "trends": trend_table(trend, program.currency),
        "spend": spend_table(trend),
    }
    cohorts = []
    if scope.is_program:
        cohorts = selectors.cohort_rows(program, period)
        tables["tiers"] = tier_table(selectors.tier_counts(program, period))
        tables["liability"] = liability_table(
            selectors.liability_by_expiry(program, period), program.currency
        )
        tables["cohorts"] = cohort_table(cohorts)
    return {"headlines": rows, "trend": trend, "tables": tables, "cohorts": cohorts}


def chart_data(program: Program, data: dict) -> dict:
    """The charts' data for json_script: figures as strings (exact decimals), labels
    translated."""
    trend = data["trend"]
    labels = dict(Metric.choices)

    def text(value):
        return None if value is None else str(value)

    charts = {
        "currency": program.currency,
        "periods": [period_label(p) for p in trend.periods],
        "series": {
            metric: {"label": str(labels[metric]), "values": [text(v) for v in values]}
            for metric, values in trend.series.items()
        },
        "bands": {
            "low": str(selectors.SURVEY_BAND_LOW),
            "high": str(selectors.SURVEY_BAND_HIGH),
            "top": str(selectors.SURVEY_BAND_TOP),
            "label_low": gettext("Survey: 2–3× (operators: 60%)"),
            "label_top": gettext("Survey: at least 4× (operators: 23%)"),
        },
        "text": {
            "tier_members": gettext("Members"),
            "points": gettext("Outstanding points, expected to be used"),
            "breakage": gettext("Expected breakage (points)"),
        },
    }
    tiers = data["tables"].get("tiers")
    if tiers is not None:
        charts["tiers"] = {
            "labels": [row[0] for row in tiers.rows],
            "values": [row[1] for row in tiers.rows],
        }
    liability = data["tables"].get("liability")
    if liability is not None:
        charts["expiry"] = {
            "labels": [row[0] for row in liability.rows],
            "points": [row[1] - row[3] for row in liability.rows],
            "breakage": [row[3] for row in liability.rows],
        }
    return charts


@require_GET
@staff_dashboard
def dashboard(request):
    """The overview of one program: headline KPIs with trend, target and formula; charts;
    cohorts; liability. Says how to compute the snapshots when there are none yet."""
    form = _filters(request)
    context = {"form": form, "title": gettext("KPI dashboard")}
    status = 200
    if not form.programs:
        context["no_program"] = True
    elif not form.is_valid():
        status = 400
    elif form.cleaned_data["period"] is None:
        program = form.cleaned_data["program"]
        context.update(program=program, no_snapshot=True)
    else:
        program = form.cleaned_data["program"]
        period = form.cleaned_data["period"]
        data = dashboard_data(form)
        refreshed = selectors.last_refresh(program, form.cleaned_data["kind"])
        context.update(
            program=program,
            period=period,
            period_label=period_label(period),
            previous_label=period_label(period.shift(-1)),
            year_ago_label=period_label(period.year_before()),
            scope=form.cleaned_data["scope"],
            refreshed=timezone.localtime(refreshed, program.tzinfo) if refreshed else None,
            time_zone=program.time_zone,
            charts=chart_data(program, data),
            query=form.query(),
            cohort_months=range(selectors.COHORT_MONTHS),
            has_targets=any(row.target for row in data["headlines"]),
            **data,
        )
    return TemplateResponse(request, "staff/dashboard.html", context, status=status)


def _csv_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value, "f")
    text = str(value)
    # Text that a spreadsheet would run as a formula (a store or tier name) is quoted.
    if isinstance(value, str) and text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


@require_GET
@staff_dashboard
def export(request, table: str):
    """One table of the overview as CSV, for the same filters and with the same rows."""
    if table not in selectors.TABLES:
        return JsonResponse(
            {"errors": [{"field": "table", "detail": gettext("Unknown table.")}]}, status=404
        )
    form = _filters(request)
    if not form.programs:
        return JsonResponse(
            {"errors": [{"field": "program", "detail": gettext("There is no program.")}]},
            status=404,
        )
    if not form.is_valid():
        errors = [
            {"field": name, "detail": str(message)}
            for name, messages in form.errors.items()
            for message in messages
        ]
        return JsonResponse({"errors": errors}, status=400)
    period = form.cleaned_data["period"]
    if period is None:
        detail = gettext("There are no snapshots yet: recompute the KPIs first.")
        return JsonResponse({"errors": [{"field": "period", "detail": detail}]}, status=404)
    data = dashboard_data(form)
    if table not in data["tables"]:
        detail = gettext("This table exists for the whole program only.")
        return JsonResponse({"errors": [{"field": "scope", "detail": detail}]}, status=400)
    result = data["tables"][table]
    program = form.cleaned_data["program"]
    scope = form.cleaned_data["scope"]
    suffix = f"-{scope.dimension}-{scope.key}" if not scope.is_program else ""
    filename = f"{program.slug}-{period.kind}-{period.start.isoformat()}{suffix}-{table}.csv"
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerow(result.headers)
    for row in result.rows:
        writer.writerow([_csv_cell(cell) for cell in row])
    return response
