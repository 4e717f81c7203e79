"""Staff administration of analytics: the KPI snapshots (read-only: only the recompute writes
them), the targets staff set per program and KPI, and the full recompute with its progress bar.
"""

from datetime import datetime
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpResponseRedirect, JsonResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.translation import gettext

from loyalty.admin_helpers import ReadOnlyAdminMixin, render_action_form
from loyalty.models import Program

from . import selectors, tasks
from .forms import RecomputeForm
from .models import KpiCohort, KpiLiabilityByExpiry, KpiRefresh, KpiTarget, KpiValue

RECOMPUTE_PERMISSION = "analytics.change_kpirefresh"
MAX_RUNS = 1000


@admin.register(KpiTarget)
class KpiTargetAdmin(admin.ModelAdmin):
    list_display = ["program", "metric", "target_value", "direction"]
    list_filter = ["program", "direction"]
    list_select_related = ["program"]
    search_fields = ["program__name"]


class SnapshotAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Snapshots are written by the recompute only; staff look, filter and search."""

    list_select_related = ["program"]
    # The tables grow with programs x periods x metrics: no COUNT(*) of the whole table.
    show_full_result_count = False


@admin.register(KpiValue)
class KpiValueAdmin(SnapshotAdmin):
    list_display = [
        "program",
        "period_kind",
        "period_start",
        "dimension",
        "dimension_key",
        "metric",
        "value",
        "numerator",
        "denominator",
    ]
    list_filter = ["program", "period_kind", "dimension", "metric"]
    search_fields = ["=metric", "=dimension_key"]


@admin.register(KpiCohort)
class KpiCohortAdmin(SnapshotAdmin):
    list_display = ["program", "cohort_month", "months_after", "members", "active", "rate"]
    list_filter = ["program", "months_after"]


@admin.register(KpiLiabilityByExpiry)
class KpiLiabilityByExpiryAdmin(SnapshotAdmin):
    list_display = [
        "program",
        "period_kind",
        "period_start",
        "expiry_month",
        "points",
        "amount",
        "expected_breakage_points",
        "expected_breakage_amount",
    ]
    list_filter = ["program", "period_kind"]


@admin.register(KpiRefresh)
class KpiRefreshAdmin(SnapshotAdmin):
    """Where each program's snapshots stand, and the page that recomputes them in full."""

    change_list_template = "staff/admin/kpirefresh_change_list.html"
    list_display = ["program", "period_kind", "recorded_through", "last_run"]
    list_filter = ["program", "period_kind"]
    list_select_related = ["program", "last_run"]

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("recompute/", view(self.recompute_view), name="analytics_kpirefresh_recompute"),
            path(
                "recompute/progress/",
                view(self.progress_view),
                name="analytics_kpirefresh_progress",
            ),
            path(
                "recompute/progress.json",
                view(self.progress_json),
                name="analytics_kpirefresh_progress_json",
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_recompute": request.user.has_perm(RECOMPUTE_PERMISSION),
        }
        return super().changelist_view(request, extra_context)

    def recompute_view(self, request):
        """Queue a recompute (a Celery task) of the programs and period kinds chosen, then
        follow its progress."""
        if not request.user.has_perm(RECOMPUTE_PERMISSION):
            raise PermissionDenied
        if request.method != "POST":
            active = Program.objects.filter(status=Program.Status.ACTIVE)
            form = RecomputeForm(initial={"programs": active})
        else:
            form = RecomputeForm(request.POST)
        if form.is_bound and form.is_valid():
            program_ids = [p.pk for p in form.cleaned_data["programs"]]
            kinds = list(form.cleaned_data["period_kinds"])
            full = form.cleaned_data["full"]
            since = timezone.now()
            transaction.on_commit(
                lambda: tasks.recompute_kpis.delay(
                    program_ids=program_ids,
                    period_kinds=kinds,
                    full=full,
                    user_id=request.user.pk,
                )
            )
            messages.success(request, gettext("The recompute is queued."))
            # One run per program, for all its period kinds.
            query = urlencode({"since": since.isoformat(), "runs": len(program_ids)})
            return HttpResponseRedirect(f"{reverse('admin:analytics_kpirefresh_progress')}?{query}")
        return render_action_form(
            self,
            request,
            "staff/admin/recompute.html",
            {
                "title": gettext("Recompute the KPI snapshots"),
                "form": form,
                "submit_label": gettext("Recompute"),
                "change_url": reverse("admin:analytics_kpirefresh_changelist"),
            },
        )

    def _progress_args(self, request):
        """(since, runs) from the query string, or a dict of field errors."""
        errors = []
        since = None
        try:
            since = datetime.fromisoformat(request.GET.get("since", ""))
            if timezone.is_naive(since):
                raise ValueError
        except ValueError:
            errors.append(
                {"field": "since", "detail": gettext("Give a date and time with a time zone.")}
            )
        try:
            runs = int(request.GET.get("runs", ""))
            if not 1 <= runs <= MAX_RUNS:
                raise ValueError
        except ValueError:
            runs = None
            errors.append(
                {
                    "field": "runs",
                    "detail": gettext("Give a whole number from 1 to %(max)d.") % {"max": MAX_RUNS},
                }
            )
        return since, runs, errors

    def progress_view(self, request):
        """A progress bar that follows the recompute (the page polls progress.json)."""
        since, runs, errors = self._progress_args(request)
        progress = None
        if not errors:
            progress = selectors.recompute_progress(
                since=since, user=request.user, expected_runs=runs
            )
        response = render_action_form(
            self,
            request,
            "staff/admin/recompute_progress.html",
            {
                "title": gettext("Recompute progress"),
                "errors": errors,
                "progress": progress,
                "progress_text": {
                    "running": gettext("The recompute is running (or waiting for a worker)…"),
                    "finished": gettext("The recompute is finished."),
                    "failed": gettext("The recompute failed: see the job runs."),
                },
                "json_url": f"{reverse('admin:analytics_kpirefresh_progress_json')}?"
                + request.GET.urlencode(),
                "change_url": reverse("admin:analytics_kpirefresh_changelist"),
            },
        )
        if errors:
            response.status_code = 400
        return response

    def progress_json(self, request):
        """{runs: [{program, period_kind, status, done, total}], percent, finished, failed}."""
        since, runs, errors = self._progress_args(request)
        if errors:
            return JsonResponse({"errors": errors}, status=400)
        return JsonResponse(
            selectors.recompute_progress(since=since, user=request.user, expected_runs=runs)
        )
