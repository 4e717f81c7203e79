# The page shows typographic signs (times, minus, dashes); the tests look for them.
"""The staff dashboards (/staff/): who may see them, what the overview shows from the snapshots
(figures, trends, targets, formulas and inputs), the filters, the CSV exports, and a query
count that does not grow with the periods, stores or tiers.

Snapshots are written directly here (the dashboards' contract is the snapshot tables); one test
goes through the admin's recompute on the small shop of conftest.py.
"""

import csv
import io
import re
from datetime import date
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse

from analytics.models import (
    Dimension,
    KpiCohort,
    KpiLiabilityByExpiry,
    KpiRefresh,
    KpiTarget,
    KpiValue,
    Metric,
    PeriodKind,
)
from analytics.periods import period_containing
from loyalty.jobs import record_job_run
from tests.factories import ProgramFactory, StaffUserFactory, StoreFactory, TierFactory

pytestmark = pytest.mark.django_db

URL = "/staff/"
PASSWORD = "correct horse battery staple"


def put(
    program,
    start,
    metric,
    value,
    *,
    kind=PeriodKind.MONTH,
    dimension=Dimension.PROGRAM,
    key="",
    store=None,
    numerator=None,
    denominator=None,
    inputs=None,
):
    period = period_containing(kind, start)
    return KpiValue.objects.create(
        program=program,
        period_kind=kind,
        period_start=period.start,
        period_end=period.end,
        dimension=dimension,
        dimension_key=key,
        store=store,
        metric=metric,
        value=None if value is None else Decimal(value),
        numerator=None if numerator is None else Decimal(numerator),
        denominator=None if denominator is None else Decimal(denominator),
        inputs=inputs or {},
    )


ROI_INPUTS = {
    "method": "member_vs_baseline_spend",
    "member_revenue": "190.00",
    "active_members": 2,
    "non_member_revenue": "40.00",
    "non_member_purchases": 2,
    "baseline_basket": "20.0000",
    "incremental_revenue": "150.00",
    "gross_margin_rate": "0.3500",
    "incremental_gross_margin": "52.50",
    "program_cost": "555.00",
    "costs": {"one_off_amortised": "100.00", "recurring": "450.00", "rewards": "5.00"},
}


@pytest.fixture
def program():
    return ProgramFactory(slug="shop", name="Shop", currency="EUR", time_zone="Europe/Paris")


@pytest.fixture
def staff_client(client):
    user = StaffUserFactory()
    client.force_login(user)
    client.user = user
    return client


def month_snapshots(program, months):
    """The headline figures of each month in `months` (first days), with values that grow by
    month so that trends are visible."""
    for i, start in enumerate(months):
        put(program, start, Metric.ACTIVE_MEMBERS, 10 + i)
        put(program, start, Metric.NEW_MEMBERS, 2 + i)
        put(program, start, Metric.RETENTION_RATE, 50 + i, numerator=5, denominator=10)
        put(program, start, Metric.REPURCHASE_RATE, 30 + i, numerator=3, denominator=10)
        put(program, start, Metric.REVENUE_MEMBER, 100 * (i + 1))
        put(program, start, Metric.REVENUE_NON_MEMBER, 40)
        put(program, start, Metric.SPEND_MULTIPLE, "2.50", numerator="95", denominator="38")
        put(
            program,
            start,
            Metric.LIABILITY_AMOUNT,
            10 * (i + 1),
            numerator=1000 * (i + 1),
            denominator="0.01",
        )
        put(
            program,
            start,
            Metric.ROI,
            "-90.54",
            numerator="-502.50",
            denominator="555.00",
            inputs=ROI_INPUTS,
        )


def html(response) -> str:
    return response.content.decode()


def kpi_value(page: str, metric: str) -> str:
    match = re.search(rf'data-testid="kpi-{metric}" data-value="([^"]*)"', page)
    assert match, f"no figure {metric}"
    return match.group(1)


# Access -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [URL, "/staff/export/kpis.csv"])
def test_anonymous_visitor_is_sent_to_the_staff_login(client, program, path):
    month_snapshots(program, [date(2026, 10, 1)])
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


@pytest.mark.parametrize("path", [URL, "/staff/export/kpis.csv"])
def test_a_user_who_is_not_staff_is_refused(client, program, path):
    month_snapshots(program, [date(2026, 10, 1)])
    user = get_user_model().objects.create_user("member", password=PASSWORD)
    client.force_login(user)
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    assert b"Shop" not in response.content


def test_staff_without_the_view_permission_are_refused_and_with_it_see_the_page(client, program):
    month_snapshots(program, [date(2026, 10, 1)])
    user = get_user_model().objects.create_user("clerk", password=PASSWORD, is_staff=True)
    client.force_login(user)
    assert client.get(URL).status_code == 403
    assert client.get("/staff/export/kpis.csv").status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_kpivalue"))
    user = get_user_model().objects.get(pk=user.pk)  # forget the permission cache
    client.force_login(user)
    assert client.get(URL).status_code == 200


# The overview ----------------------------------------------------------------------------------


def test_without_snapshots_the_page_says_how_to_compute_them(staff_client, program):
    response = staff_client.get(URL)
    assert response.status_code == 200
    page = html(response)
    assert 'data-testid="no-snapshot"' in page
    assert "manage.py recompute_kpis --program shop --full" in page
    assert reverse("admin:analytics_kpirefresh_recompute") in page
    assert "<canvas" not in page


def test_without_any_program_the_page_says_so(staff_client):
    response = staff_client.get(URL)
    assert response.status_code == 200
    assert "seed_demo" in html(response)


def test_overview_shows_the_latest_period_with_its_trends(staff_client, program):
    month_snapshots(
        program, [date(2025, 10, 1), date(2026, 8, 1), date(2026, 9, 1), date(2026, 10, 1)]
    )
    response = staff_client.get(URL, HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 200
    page = html(response)
    # The latest period by default: October 2026 (4th month written: i = 3).
    assert "October 2026" in page
    assert Decimal(kpi_value(page, "active_members")) == 13
    assert Decimal(kpi_value(page, "revenue_member")) == 400
    row = re.search(r'<tr data-metric="revenue_member".*?</tr>', page, re.S).group(0)
    # Previous period (September: 300.00) and a year before (October 2025: 100.00).
    assert "300.00 EUR" in row
    assert "+33.3 %" in row
    assert "100.00 EUR" in row
    assert "+300.0 %" in row
    # A rate moves in percentage points: retention 53 against 52 and against 50.
    row = re.search(r'<tr data-metric="retention_rate".*?</tr>', page, re.S).group(0)
    assert "+1.00 pts" in row
    assert "+3.00 pts" in row
    # Figures the snapshots do not hold are not invented.
    assert 'data-testid="kpi-program_cost"' not in page


def test_roi_is_shown_with_its_method_and_every_input(staff_client, program):
    month_snapshots(program, [date(2026, 10, 1)])
    page = html(staff_client.get(URL, HTTP_ACCEPT_LANGUAGE="en"))
    assert Decimal(kpi_value(page, "roi")) == Decimal("-90.54")
    row = re.search(r'<tr data-metric="roi".*?</tr>', page, re.S).group(0)
    assert "(Incremental gross margin − program cost) ÷ program cost × 100" in row
    assert "-502.5" in row
    assert "555" in row
    inputs = re.search(r'data-testid="inputs-roi">(.*?)</dl>', row, re.S).group(1)
    for text in (
        "member against non-member baseline spend",
        "Member revenue</dt><dd>190.00",
        "Active members</dt><dd>2",
        "Average non-member basket (baseline)</dt><dd>20.0000",
        "Gross margin rate</dt><dd>0.3500",
        "Incremental gross margin</dt><dd>52.50",
        "Costs › recurring costs</dt><dd>450.00",
        "Costs › reward costs</dt><dd>5.00",
    ):
        assert text in inputs


def test_targets_show_on_and_off_target_with_the_gap(staff_client, program):
    month_snapshots(program, [date(2026, 10, 1)])
    KpiTarget.objects.create(
        program=program, metric=Metric.RETENTION_RATE, target_value=Decimal("45")
    )
    KpiTarget.objects.create(
        program=program, metric=Metric.REPURCHASE_RATE, target_value=Decimal("40")
    )
    KpiTarget.objects.create(
        program=program,
        metric=Metric.SPEND_MULTIPLE,
        target_value=Decimal("2"),
        direction=KpiTarget.Direction.LOWER,
    )
    page = html(staff_client.get(URL, HTTP_ACCEPT_LANGUAGE="en"))
    retention = re.search(r'<tr data-metric="retention_rate" class="([^"]+)"', page).group(1)
    repurchase = re.search(r'<tr data-metric="repurchase_rate" class="([^"]+)"', page).group(1)
    spend = re.search(r'<tr data-metric="spend_multiple" class="([^"]+)"', page).group(1)
    assert (retention, repurchase, spend) == ("on-target", "off-target", "off-target")
    cell = re.search(r'data-testid="target-retention_rate">(.*?)</td>', page, re.S).group(1)
    assert "On target" in cell
    assert "target 45.00 %, gap +5.00 %" in cell
    cell = re.search(r'data-testid="target-repurchase_rate">(.*?)</td>', page, re.S).group(1)
    assert "Off target" in cell
    assert "gap -10.00 %" in cell
    # No target on a figure: no badge.
    cell = re.search(r'data-testid="target-active_members">(.*?)</td>', page, re.S).group(1)
    assert cell.strip() == "–"


def test_charts_get_their_data_through_json_script(staff_client, program):
    months = [date(2026, 8, 1), date(2026, 9, 1), date(2026, 10, 1)]
    month_snapshots(program, months)
    bronze = TierFactory(program=program, name="Bronze", rank=0)
    gold = TierFactory(program=program, name="Gold </script>", rank=1)
    for key, n in ((str(bronze.pk), 7), (str(gold.pk), 3), ("", 1)):
        put(program, date(2026, 10, 1), Metric.TIER_MEMBERS, n, dimension=Dimension.TIER, key=key)
    response = staff_client.get(URL, HTTP_ACCEPT_LANGUAGE="en")
    page = html(response)
    assert '<script id="dashboard-data" type="application/json">' in page
    assert "/static/vendor/chartjs/chart.umd.min.js" in page
    assert "cdn" not in page.lower()
    charts = response.context["charts"]
    assert charts["periods"] == ["August 2026", "September 2026", "October 2026"]
    assert charts["series"]["revenue_member"]["values"] == ["100.0000", "200.0000", "300.0000"]
    assert charts["tiers"] == {
        "labels": ["Bronze", "Gold </script>", "No tier"],
        "values": [7, 3, 1],
    }
    # A tier name cannot close the script element.
    assert "Gold </script>" not in page.split('id="dashboard-data"')[1].split("</script>")[0]


def test_cohort_heatmap_and_liability_by_expiry(staff_client, program):
    month_snapshots(program, [date(2026, 10, 1)])
    KpiCohort.objects.create(
        program=program,
        cohort_month=date(2026, 9, 1),
        months_after=0,
        members=4,
        active=3,
        rate=Decimal("75.00"),
    )
    KpiCohort.objects.create(
        program=program,
        cohort_month=date(2026, 9, 1),
        months_after=1,
        members=4,
        active=1,
        rate=Decimal("25.00"),
    )
    KpiCohort.objects.create(
        program=program,
        cohort_month=date(2026, 10, 1),
        months_after=0,
        members=2,
        active=2,
        rate=Decimal("100.00"),
    )
    # Out of the window: cohorts after the period.
    KpiCohort.objects.create(
        program=program,
        cohort_month=date(2026, 11, 1),
        months_after=0,
        members=9,
        active=9,
        rate=Decimal("100.00"),
    )
    KpiLiabilityByExpiry.objects.create(
        program=program,
        period_kind="month",
        period_start=date(2026, 10, 1),
        expiry_month=date(2027, 10, 1),
        points=1000,
        amount=Decimal("10.00"),
        expected_breakage_points=100,
        expected_breakage_amount=Decimal("1.00"),
    )
    KpiLiabilityByExpiry.objects.create(
        program=program,
        period_kind="month",
        period_start=date(2026, 10, 1),
        expiry_month=None,
        points=50,
        amount=Decimal("0.50"),
        expected_breakage_points=0,
        expected_breakage_amount=Decimal("0.00"),
    )
    response = staff_client.get(URL, HTTP_ACCEPT_LANGUAGE="en")
    page = html(response)
    heatmap = re.search(r'data-testid="cohort-table">(.*?)</table>', page, re.S).group(1)
    assert heatmap.count("<tr>") == 3  # header and two cohorts
    assert 'class="num heat-7" title="3 of 4">75.00' in heatmap
    assert 'class="num heat-2" title="1 of 4">25.00' in heatmap
    assert 'class="num heat-10" title="2 of 2">100.00' in heatmap
    assert response.context["charts"]["expiry"] == {
        "labels": ["2027-10", "never"],
        "points": [900, 50],
        "breakage": [100, 0],
    }


# Filters ---------------------------------------------------------------------------------------


def test_filters_choose_program_period_kind_and_period(staff_client, program):
    other = ProgramFactory(slug="other", name="Other")
    month_snapshots(program, [date(2026, 9, 1), date(2026, 10, 1)])
    put(program, date(2026, 11, 16), Metric.ACTIVE_MEMBERS, 77, kind=PeriodKind.WEEK)
    put(other, date(2026, 10, 1), Metric.ACTIVE_MEMBERS, 5)

    page = html(staff_client.get(URL, {"program": "shop", "period": "2026-09-01"}))
    assert Decimal(kpi_value(page, "active_members")) == 10
    page = html(staff_client.get(URL, {"program": "shop", "kind": "week"}))
    assert Decimal(kpi_value(page, "active_members")) == 77
    page = html(staff_client.get(URL, {"program": "other"}))
    assert Decimal(kpi_value(page, "active_members")) == 5
    # A quarter without snapshots: how to compute them.
    page = html(staff_client.get(URL, {"program": "shop", "kind": "quarter"}))
    assert 'data-testid="no-snapshot"' in page


def test_store_and_channel_scopes_show_their_own_figures(staff_client, program):
    store = StoreFactory(program=program, name="Rivoli", channel="shop")
    StoreFactory(program=program, name="Web", channel="web")
    month_snapshots(program, [date(2026, 10, 1)])
    october = date(2026, 10, 1)
    put(
        program,
        october,
        Metric.ACTIVE_MEMBERS,
        4,
        dimension=Dimension.STORE,
        key=str(store.pk),
        store=store,
    )
    put(
        program,
        october,
        Metric.REVENUE_MEMBER,
        "123.45",
        dimension=Dimension.STORE,
        key=str(store.pk),
        store=store,
    )
    put(program, october, Metric.ACTIVE_MEMBERS, 6, dimension=Dimension.CHANNEL, key="web")

    response = staff_client.get(URL, {"scope": f"store:{store.pk}"})
    page = html(response)
    assert Decimal(kpi_value(page, "active_members")) == 4
    assert Decimal(kpi_value(page, "revenue_member")) == Decimal("123.45")
    assert 'data-testid="kpi-roi"' not in page  # the whole program's only
    assert 'data-testid="cohort-table"' not in page
    page = html(staff_client.get(URL, {"scope": "channel:web"}))
    assert Decimal(kpi_value(page, "active_members")) == 6
    # The scope list offers the stores and channels of the program.
    options = re.findall(r'<option value="([^"]*)"', page)
    assert {f"store:{store.pk}", "channel:web", "channel:shop", ""} <= set(options)


def test_the_heading_and_the_scope_list_name_each_scope(staff_client, program):
    store = StoreFactory(program=program, name="Rivoli", channel="shop")
    month_snapshots(program, [date(2026, 10, 1)])
    heading = re.compile(r"October 2026 \(from [^)]*\), ([^.<]+)\.")
    names = {}
    for scope in ("", f"store:{store.pk}", "channel:shop"):
        page = html(staff_client.get(URL, {"scope": scope}, HTTP_ACCEPT_LANGUAGE="en"))
        names[scope] = heading.search(page).group(1)
        options = dict(re.findall(r'<option value="([^"]*)"[^>]*>([^<]*)</option>', page))
        assert options[scope] == names[scope]
    assert names == {
        "": "Whole program",
        f"store:{store.pk}": "Rivoli",
        "channel:shop": "Channel: Shop",
    }


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"program": "nope"}, "program"),
        ({"kind": "year"}, "kind"),
        ({"period": "2026-13-01"}, "period"),
        ({"period": "2024-01-01"}, "period"),
        ({"scope": "store:999999"}, "scope"),
        ({"scope": "channel:moon"}, "scope"),
    ],
)
def test_bad_filters_are_form_errors_and_show_no_figures(staff_client, program, params, field):
    month_snapshots(program, [date(2026, 10, 1)])
    response = staff_client.get(URL, params)
    assert response.status_code == 400
    assert list(response.context["form"].errors) == [field]
    page = html(response)
    assert f'id="id_{field}_errors"' in page
    assert 'data-testid="kpi-table"' not in page
    csv_response = staff_client.get("/staff/export/kpis.csv", params)
    assert csv_response.status_code == 400
    assert [e["field"] for e in csv_response.json()["errors"]] == [field]


# CSV exports -----------------------------------------------------------------------------------


def read_csv(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.content.decode())))


def test_every_table_of_the_page_has_a_csv_export_with_the_same_rows(staff_client, program):
    month_snapshots(program, [date(2026, 9, 1), date(2026, 10, 1)])
    tier = TierFactory(program=program, name="=cmd", rank=0)
    put(
        program,
        date(2026, 10, 1),
        Metric.TIER_MEMBERS,
        5,
        dimension=Dimension.TIER,
        key=str(tier.pk),
    )
    KpiCohort.objects.create(
        program=program,
        cohort_month=date(2026, 10, 1),
        months_after=0,
        members=2,
        active=1,
        rate=Decimal("50.00"),
    )
    KpiLiabilityByExpiry.objects.create(
        program=program,
        period_kind="month",
        period_start=date(2026, 10, 1),
        expiry_month=date(2027, 10, 1),
        points=1000,
        amount=Decimal("10.00"),
        expected_breakage_points=100,
        expected_breakage_amount=Decimal("1.00"),
    )
    response = staff_client.get(URL, HTTP_ACCEPT_LANGUAGE="en")
    page = html(response)
    links = set(re.findall(r'href="/staff/export/([a-z]+)\.csv\?([^"]*)"', page))
    assert {name for name, _query in links} == {
        "kpis",
        "trends",
        "spend",
        "tiers",
        "liability",
        "cohorts",
    }
    for name, query in links:
        export = staff_client.get(
            f"/staff/export/{name}.csv?{query.replace('&amp;', '&')}", HTTP_ACCEPT_LANGUAGE="en"
        )
        assert export.status_code == 200, name
        assert export["Content-Type"] == "text/csv; charset=utf-8"
        assert export["Content-Disposition"] == (
            f'attachment; filename="shop-month-2026-10-01-{name}.csv"'
        )
        table = response.context["tables"][name]
        rows = read_csv(export)
        assert rows[0] == table.headers
        assert len(rows) == len(table.rows) + 1

    rows = read_csv(staff_client.get("/staff/export/kpis.csv", HTTP_ACCEPT_LANGUAGE="en"))
    roi = next(row for row in rows if row[2] == "roi")
    header = rows[0]
    assert roi[header.index("Value")] == "-90.5400"
    assert roi[header.index("Numerator")] == "-502.5000"
    assert roi[header.index("Denominator")] == "555.0000"
    assert "Gross margin rate: 0.3500" in roi[header.index("Inputs")]
    revenue = next(row for row in rows if row[2] == "revenue_member")
    assert revenue[header.index("Previous period")] == "100.0000"
    assert revenue[header.index("Change on previous period")] == "100.0"

    trends = read_csv(staff_client.get("/staff/export/trends.csv", HTTP_ACCEPT_LANGUAGE="en"))
    column = trends[0].index("Member revenue")
    assert [row[1] for row in trends[1:]] == ["2026-09-01", "2026-10-01"]
    assert [row[column] for row in trends[1:]] == ["100.0000", "200.0000"]
    # A name that a spreadsheet would run as a formula is quoted.
    tiers = read_csv(staff_client.get("/staff/export/tiers.csv"))
    assert tiers[1] == ["'=cmd", "5"]
    cohorts = read_csv(staff_client.get("/staff/export/cohorts.csv"))
    assert cohorts[1][:3] == ["2026-10", "2", "50.00"]
    liability = read_csv(staff_client.get("/staff/export/liability.csv"))
    assert liability[1] == ["2027-10", "1000", "10.00", "100", "1.00"]
    spend = read_csv(staff_client.get("/staff/export/spend.csv", HTTP_ACCEPT_LANGUAGE="en"))
    assert spend[2][2:] == ["2.5000", "2–3× (survey of operators: 60%)"]


def test_exports_refuse_unknown_tables_and_program_tables_for_a_store(staff_client, program):
    store = StoreFactory(program=program)
    month_snapshots(program, [date(2026, 10, 1)])
    put(
        program,
        date(2026, 10, 1),
        Metric.ACTIVE_MEMBERS,
        4,
        dimension=Dimension.STORE,
        key=str(store.pk),
        store=store,
    )
    assert staff_client.get("/staff/export/members.csv").status_code == 404
    response = staff_client.get("/staff/export/tiers.csv", {"scope": f"store:{store.pk}"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "scope"
    response = staff_client.get("/staff/export/kpis.csv", {"scope": f"store:{store.pk}"})
    assert response.status_code == 200
    assert response["Content-Disposition"].endswith(f'-store-{store.pk}-kpis.csv"')


# Query count ------------------------------------------------------------------------------------


def busy_program(slug, *, months, stores, tiers):
    program = ProgramFactory(slug=slug)
    store_list = [StoreFactory(program=program, slug=f"s{i}") for i in range(stores)]
    tier_list = [TierFactory(program=program, name=f"T{i}", rank=i) for i in range(tiers)]
    starts = [date(2025 + (m + 9) // 12, (m + 9) % 12 + 1, 1) for m in range(months)]
    month_snapshots(program, starts)
    for start in starts:
        for store in store_list:
            put(
                program,
                start,
                Metric.ACTIVE_MEMBERS,
                1,
                dimension=Dimension.STORE,
                key=str(store.pk),
                store=store,
            )
        for tier in tier_list:
            put(program, start, Metric.TIER_MEMBERS, 2, dimension=Dimension.TIER, key=str(tier.pk))
        KpiCohort.objects.create(
            program=program,
            cohort_month=start,
            months_after=0,
            members=3,
            active=1,
            rate=Decimal("33.33"),
        )
        KpiLiabilityByExpiry.objects.create(
            program=program,
            period_kind="month",
            period_start=start,
            expiry_month=start,
            points=10,
            amount=Decimal("0.10"),
            expected_breakage_points=1,
            expected_breakage_amount=Decimal("0.01"),
        )
    with record_job_run("analytics.recompute_kpis") as run:
        pass
    KpiRefresh.objects.create(
        program=program,
        period_kind="month",
        recorded_through=run.started_at,
        fingerprint="x",
        last_run=run,
    )
    for metric in (Metric.RETENTION_RATE, Metric.ROI):
        KpiTarget.objects.create(program=program, metric=metric, target_value=Decimal(1))
    return program


def test_overview_queries_do_not_grow_with_periods_stores_or_tiers(
    staff_client, django_assert_max_num_queries, django_assert_num_queries
):
    busy_program("small", months=2, stores=1, tiers=1)
    busy_program("large", months=30, stores=6, tiers=5)
    staff_client.get(URL, {"program": "small"})  # warm the session and the content types

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as small:
        assert staff_client.get(URL, {"program": "small"}).status_code == 200
    with django_assert_num_queries(len(small)):
        response = staff_client.get(URL, {"program": "large"})
    assert response.status_code == 200
    assert len(response.context["trend"].periods) == 24
    with django_assert_max_num_queries(13):
        staff_client.get(URL, {"program": "large", "scope": "channel:shop"})
    with django_assert_max_num_queries(13):
        staff_client.get("/staff/export/kpis.csv", {"program": "large"})


# Ways in ---------------------------------------------------------------------------------------


def test_home_page_and_make_run_point_staff_to_the_dashboards(client):
    from django.core.management import call_command

    assert 'href="/staff/"' in html(client.get("/"))
    out = io.StringIO()
    call_command("show_urls_and_logins", stdout=out)
    assert "KPI dashboards    http://127.0.0.1:8000/staff/" in out.getvalue()
