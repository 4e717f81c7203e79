# The formulas and figures shown to staff use typographic signs (times, minus, dashes).
# ruff: noqa: RUF001
"""The staff dashboards (/staff/): the KPI overview of a program with its charts, and the CSV
export of each of its tables. Staff only; they read the snapshots (analytics.selectors), never
the raw purchases or ledger."""

import csv
from decimal import Decimal
from functools import wraps

from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.translation import gettext
from django.views.decorators.http import require_GET

from loyalty.models import Program

from . import selectors
from .forms import DashboardFilterForm
from .models import Metric

VIEW_PERMISSION = "analytics.view_kpivalue"


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
    rows = selectors.headlines(program, period, scope)
    trend = selectors.trends(program, period, scope)
    tables = {
        "kpis": selectors.headline_table(rows),
        "trends": selectors.trend_table(trend, program.currency),
        "spend": selectors.spend_table(trend),
    }
    cohorts = []
    if scope.is_program:
        cohorts = selectors.cohort_rows(program, period)
        tables["tiers"] = selectors.tier_table(program, period)
        tables["liability"] = selectors.liability_table(program, period)
        tables["cohorts"] = selectors.cohort_table(cohorts)
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
        "periods": [selectors.period_label(p) for p in trend.periods],
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
            period_label=selectors.period_label(period),
            previous_label=selectors.period_label(period.shift(-1)),
            year_ago_label=selectors.period_label(period.year_before()),
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
