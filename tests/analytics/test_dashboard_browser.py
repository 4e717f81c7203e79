# The chart legends show typographic signs (times, dashes); the test looks for them.
"""The staff dashboard in a real browser: Debian's Chromium driven by Playwright.

Staff log in through the admin's login page, open the dashboard and see every chart drawn by
the vendored Chart.js (no request leaves the site), open a figure's formula, then queue a full
recompute from the admin and watch its progress bar reach 100 %. Screenshots are saved as
artifacts (BROWSER_ARTIFACTS, default var/artifacts/browser/).
"""

import re
from datetime import date
from decimal import Decimal

import pytest

from analytics.models import Dimension, KpiCohort, KpiLiabilityByExpiry, KpiTarget, Metric
from config.celery import app as celery_app
from tests.browser import chromium_pages, live_server, screenshot
from tests.factories import StaffUserFactory, TierFactory

from .conftest import build_shop
from .test_dashboard import PASSWORD, month_snapshots, put

DESKTOP = {"width": 1280, "height": 900}
CHARTS = [
    "chart-members",
    "chart-revenue",
    "chart-rates",
    "chart-liability",
    "chart-spend",
    "chart-tiers",
    "chart-expiry",
]

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def staff_server(transactional_db):
    with live_server() as server:
        yield server


@pytest.fixture
def open_desktop():
    """open_desktop() -> a page in Chromium at desktop width (see tests/browser.py)."""
    with chromium_pages(viewport=DESKTOP, locale="en-GB") as open_page:
        yield open_page


def shot(page, name):
    screenshot(page, f"dashboard-{name}")


def log_in(page, base_url, username, next_path):
    page.goto(f"{base_url}/admin/login/?next={next_path}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base_url}{next_path}*")


def test_staff_see_the_charts_drawn(staff_server, open_desktop):
    shop = build_shop()
    program = shop.program
    months = [date(2025, 11, 1)] + [date(2026, m, 1) for m in range(1, 12)]
    month_snapshots(program, months)
    november = date(2026, 11, 1)
    for tier, n in ((shop.bronze, 12), (shop.silver, 4)):
        put(program, november, Metric.TIER_MEMBERS, n, dimension=Dimension.TIER, key=str(tier.pk))
    TierFactory(program=program, name="Gold", rank=2)
    for i, month in enumerate(months[-4:]):
        for after in range(4 - i):
            KpiCohort.objects.create(
                program=program,
                cohort_month=month,
                months_after=after,
                members=20,
                active=20 - 5 * after,
                rate=Decimal(100 - 25 * after),
            )
    for expiry, points in ((date(2027, 5, 1), 4000), (date(2027, 11, 1), 2500)):
        KpiLiabilityByExpiry.objects.create(
            program=program,
            period_kind="month",
            period_start=november,
            expiry_month=expiry,
            points=points,
            amount=Decimal(points) / 100,
            expected_breakage_points=points // 10,
            expected_breakage_amount=Decimal(points) / 1000,
        )
    KpiTarget.objects.create(program=program, metric=Metric.RETENTION_RATE, target_value=60)
    staff = StaffUserFactory(username="finance")

    page = open_desktop()
    log_in(page, staff_server.url, staff.username, "/staff/")
    page.wait_for_function(
        "() => window.staffCharts && Object.keys(window.staffCharts).length === 7"
    )

    drawn = page.evaluate(
        """(ids) => ids.map((id) => {
            const canvas = document.getElementById(id);
            const chart = Chart.getChart(canvas);
            const pixels = canvas.getContext("2d")
                .getImageData(0, 0, canvas.width, canvas.height).data;
            let painted = 0;
            for (let i = 3; i < pixels.length; i += 4) { if (pixels[i] > 0) painted += 1; }
            return {
                id,
                isChart: chart === window.staffCharts[id],
                width: canvas.width,
                height: canvas.height,
                points: chart.data.datasets.reduce(
                    (n, d) => n + d.data.filter((v) => v !== null).length, 0),
                painted,
            };
        })""",
        CHARTS,
    )
    for chart in drawn:
        assert chart["isChart"], chart
        assert chart["width"] > 100, chart
        assert chart["height"] > 100, chart
        assert chart["points"] > 0, chart
        assert chart["painted"] > 1000, chart
    assert page.evaluate("Chart.version") == "4.6.1"
    spend = page.evaluate(
        "Chart.getChart(document.getElementById('chart-spend')).data.datasets"
        ".map((d) => [d.label, d.data[0]])"
    )
    assert spend == [
        ["Spend multiple (members vs non-member baseline)", 2.5],
        ["Survey: 2–3× (operators: 60%)", 2],
        ["Survey: 2–3× (operators: 60%)", 3],
        ["Survey: at least 4× (operators: 23%)", 4],
    ]
    assert page.evaluate("Chart.getChart(document.getElementById('chart-tiers')).data.labels") == [
        "Bronze",
        "Silver",
    ]
    # November's figures, retention on target (61 >= 60).
    assert page.locator("[data-testid=kpi-active_members]").text_content() == "21"
    assert page.locator("tr[data-metric=retention_rate]").get_attribute("class") == "on-target"
    # The formula behind ROI, opened.
    roi = page.locator("tr[data-metric=roi] details")
    roi.locator("summary").click()
    assert roi.locator("[data-testid=inputs-roi]").is_visible()
    assert "Gross margin rate" in roi.text_content()
    assert page.locator("[data-testid=cohort-table] td.heat-10").count() == 4
    shot(page, "1-overview")

    # Another period from the filters.
    page.select_option("#id_period", "2026-06-01")
    page.click("form.filters button[type=submit]")
    page.wait_for_url(re.compile(r".*period=2026-06-01.*"))
    page.wait_for_function(
        "() => window.staffCharts && Object.keys(window.staffCharts).length >= 5"
    )
    assert page.locator("[data-testid=kpi-active_members]").text_content() == "16"
    shot(page, "2-june")


def test_recompute_progress_bar_reaches_the_end(staff_server, open_desktop):
    shop = build_shop()
    staff = StaffUserFactory(username="operator")
    celery_app.conf.task_always_eager = True
    try:
        page = open_desktop()
        log_in(page, staff_server.url, staff.username, "/admin/analytics/kpirefresh/")
        page.click("a[href$='/kpirefresh/recompute/']")
        for kind in ("week", "quarter"):
            page.uncheck(f"input[name=period_kinds][value={kind}]")
        assert page.is_checked(f"input[name=programs][value='{shop.program.pk}']")
        page.click("input[type=submit]")
        page.wait_for_url(re.compile(r".*/recompute/progress/\?.*"))
        page.wait_for_function("() => document.getElementById('recompute-bar').value === 100")
        page.wait_for_function(
            "() => document.getElementById('recompute-status').textContent.includes('finished')"
        )
        assert page.locator("#recompute-runs tr").count() == 1
        shot(page, "3-recompute")
        page.click("a[href='/staff/']")
        page.wait_for_function(
            "() => window.staffCharts && Object.keys(window.staffCharts).length > 0"
        )
        shot(page, "4-after-recompute")
    finally:
        celery_app.conf.task_always_eager = False
