"""Analytics in the admin: read-only snapshots, targets edited by staff and shown on the
dashboard, and the full recompute queued from the admin with its progress bar (the Celery task
runs eagerly here, on the small shop of conftest.py)."""

import re
from datetime import date, timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from analytics.models import KpiRefresh, KpiTarget, KpiValue, Metric
from config.celery import app as celery_app
from loyalty.models import JobRun
from tests.factories import StaffUserFactory

from .conftest import months_through_today
from .test_dashboard import kpi_value, month_snapshots

pytestmark = pytest.mark.django_db

RECOMPUTE = "/admin/analytics/kpirefresh/recompute/"
PROGRESS_JSON = "/admin/analytics/kpirefresh/recompute/progress.json"


@pytest.fixture
def staff_client(client):
    user = StaffUserFactory()
    client.force_login(user)
    client.user = user
    return client


@pytest.fixture
def eager():
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


def test_snapshots_are_read_only_in_the_admin(staff_client, shop):
    month_snapshots(shop.program, [date(2026, 10, 1)])
    value = KpiValue.objects.get(metric=Metric.ROI)
    response = staff_client.get(reverse("admin:analytics_kpivalue_changelist"))
    assert response.status_code == 200
    assert b"roi" in response.content
    assert staff_client.get(reverse("admin:analytics_kpivalue_add")).status_code == 403
    change = staff_client.get(reverse("admin:analytics_kpivalue_change", args=[value.pk]))
    assert change.status_code == 200
    assert b'name="_save"' not in change.content
    response = staff_client.post(
        reverse("admin:analytics_kpivalue_delete", args=[value.pk]), {"post": "yes"}
    )
    assert response.status_code == 403
    assert KpiValue.objects.filter(pk=value.pk).exists()
    for name in ("kpicohort", "kpiliabilitybyexpiry", "kpirefresh"):
        assert staff_client.get(reverse(f"admin:analytics_{name}_changelist")).status_code == 200


def test_a_target_set_in_the_admin_shows_on_the_dashboard(staff_client, shop):
    month_snapshots(shop.program, [date(2026, 10, 1)])
    response = staff_client.post(
        reverse("admin:analytics_kpitarget_add"),
        {
            "program": shop.program.pk,
            "metric": Metric.REPURCHASE_RATE,
            "target_value": "25",
            "direction": "higher",
        },
    )
    assert response.status_code == 302
    target = KpiTarget.objects.get()
    assert target.target_value == Decimal(25)
    page = staff_client.get("/staff/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert '<tr data-metric="repurchase_rate" class="on-target"' in page
    # A second target for the same KPI is a form error.
    response = staff_client.post(
        reverse("admin:analytics_kpitarget_add"),
        {
            "program": shop.program.pk,
            "metric": Metric.REPURCHASE_RATE,
            "target_value": "30",
            "direction": "higher",
        },
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert KpiTarget.objects.count() == 1


def test_full_recompute_from_the_admin_with_its_progress(
    staff_client, shop, eager, django_capture_on_commit_callbacks
):
    page = staff_client.get(reverse("admin:analytics_kpirefresh_changelist")).content.decode()
    assert RECOMPUTE in page
    form = staff_client.get(RECOMPUTE)
    assert form.status_code == 200
    with django_capture_on_commit_callbacks(execute=True) as queued:
        response = staff_client.post(
            RECOMPUTE,
            {"programs": [shop.program.pk], "period_kinds": ["month", "quarter"], "full": "on"},
        )
    assert len(queued) == 1
    assert response.status_code == 302
    location = response["Location"]
    assert location.startswith("/admin/analytics/kpirefresh/recompute/progress/?")
    query = parse_qs(urlsplit(location).query)
    assert query["runs"] == ["1"]

    progress = staff_client.get(PROGRESS_JSON, {"since": query["since"][0], "runs": "1"}).json()
    assert progress["finished"] is True
    assert progress["failed"] is False
    assert progress["percent"] == 100
    [run] = progress["runs"]
    assert run["program"] == "shop"
    # From August 2026 (the shop's first activity) to today's month and quarter.
    months = months_through_today(date(2026, 8, 1))
    quarters = (months_through_today(date(2026, 7, 1)) + 2) // 3  # from Q3 2026
    assert run["kinds"] == f"month {months}/{months}, quarter {quarters}/{quarters}"
    assert run["status"] == "succeeded"
    assert (run["done"], run["total"]) == (months + quarters, months + quarters)
    assert JobRun.objects.get(pk=run["id"]).triggered_by == staff_client.user
    assert KpiRefresh.objects.filter(program=shop.program, period_kind="month").exists()

    page = staff_client.get(location).content.decode()
    assert re.search(r'<progress id="recompute-bar" max="100" value="100"', page)
    assert "/static/staff/recompute.js" in page

    # The dashboard shows what was computed: September's member revenue (docs/kpis.md).
    page = staff_client.get("/staff/", {"period": "2026-09-01"}).content.decode()
    assert Decimal(kpi_value(page, "revenue_member")) == Decimal("190.00")


def test_progress_counts_the_periods_done_of_each_run(staff_client):
    since = timezone.now() - timedelta(seconds=5)
    user = staff_client.user
    JobRun.objects.create(
        name="analytics.recompute_kpis",
        started_at=since + timedelta(seconds=1),
        status=JobRun.Status.SUCCEEDED,
        summary={
            "program": "a",
            "done": 10,
            "total": 10,
            "kinds": {"month": {"done": 10, "total": 10}},
        },
        triggered_by=user,
    )
    JobRun.objects.create(
        name="analytics.recompute_kpis",
        started_at=since + timedelta(seconds=2),
        status=JobRun.Status.RUNNING,
        summary={
            "program": "b",
            "done": 30,
            "total": 40,
            "kinds": {"month": {"done": 12, "total": 12}, "week": {"done": 18, "total": 28}},
        },
        triggered_by=user,
    )
    # Not this request's: before it, another job, another user.
    JobRun.objects.create(
        name="analytics.recompute_kpis",
        started_at=since - timedelta(seconds=1),
        status=JobRun.Status.RUNNING,
        triggered_by=user,
    )
    JobRun.objects.create(
        name="members.release_points", started_at=since + timedelta(seconds=1), triggered_by=user
    )
    JobRun.objects.create(
        name="analytics.recompute_kpis",
        started_at=since + timedelta(seconds=1),
        triggered_by=StaffUserFactory(),
    )
    progress = staff_client.get(PROGRESS_JSON, {"since": since.isoformat(), "runs": "3"}).json()
    # (1 + 30/40 + 0 for the run not started yet) / 3 = 58 %.
    assert progress["percent"] == 58
    assert progress["finished"] is False
    assert [(r["program"], r["kinds"], r["done"], r["total"]) for r in progress["runs"]] == [
        ("a", "month 10/10", 10, 10),
        ("b", "month 12/12, week 18/28", 30, 40),
    ]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"runs": "1"}, "since"),
        ({"since": "2026-11-23T10:00:00", "runs": "1"}, "since"),
        ({"since": "2026-11-23T10:00:00+00:00", "runs": "0"}, "runs"),
        ({"since": "2026-11-23T10:00:00+00:00", "runs": "many"}, "runs"),
    ],
)
def test_progress_refuses_bad_parameters_naming_the_field(staff_client, params, field):
    response = staff_client.get(PROGRESS_JSON, params)
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == [field]
    page = staff_client.get("/admin/analytics/kpirefresh/recompute/progress/", params)
    assert page.status_code == 400


def test_recompute_form_errors_queue_nothing(
    staff_client, shop, eager, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as queued:
        response = staff_client.post(RECOMPUTE, {"programs": [], "period_kinds": ["year"]})
    assert queued == []
    assert response.status_code == 200
    assert set(response.context["form"].errors) == {"programs", "period_kinds"}
    assert not JobRun.objects.filter(name="analytics.recompute_kpis").exists()


def test_recompute_needs_the_permission(client, shop):
    user = get_user_model().objects.create_user("viewer", password="x", is_staff=True)
    user.user_permissions.add(
        Permission.objects.get(codename="view_kpirefresh"),
        Permission.objects.get(codename="view_kpivalue"),
    )
    client.force_login(user)
    assert client.get(reverse("admin:analytics_kpirefresh_changelist")).status_code == 200
    assert client.get(RECOMPUTE).status_code == 403
    assert client.post(RECOMPUTE, {"programs": [shop.program.pk]}).status_code == 403
