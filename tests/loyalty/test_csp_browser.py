"""The site's Content-Security-Policy in a real browser: Debian's Chromium driven by Playwright.

Every browser test fails on a policy violation (tests/browser.py). These tests show that the
check catches each kind of inline code, then walk the pages the other browser tests do not:
the admin's login, index, every change list, add form and one change form per model, its
custom pages, the KPI dashboard with its charts and the API documentation (Swagger UI).
"""

import io

import pytest
from django.contrib import admin
from django.core.management import call_command
from django.test import RequestFactory
from django.urls import reverse

from demo.accounts import DEMO_MEMBER
from members.models import Member
from members.services import adjust_points
from rewards.models import Redemption, Reward
from rewards.services import redeem
from tests.browser import chromium_pages, live_server, screenshot
from tests.factories import StaffUserFactory

DESKTOP = {"width": 1280, "height": 900}
PASSWORD = "correct horse battery staple"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def server(transactional_db):
    with live_server() as server:
        yield server


def log_in(page, base_url, username):
    page.goto(f"{base_url}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base_url}/admin/")


def visit_probe(base_url: str, seen: dict) -> None:
    """Open the probe page (tests/loyalty/csp_probe_urls.py), click its inline handler and its
    javascript: link, and note in `seen` what ran and which colours applied."""
    with chromium_pages(viewport=DESKTOP) as open_page:
        page = open_page()
        page.goto(f"{base_url}/csp-probe/")
        page.click("button")
        page.click("a")
        seen["ran"] = page.evaluate("() => [window.inlineRan, window.handlerRan, window.linkRan]")
        seen["colours"] = page.evaluate(
            """() => ["p.probe", "p.probe-attr"].map(
                (selector) => getComputedStyle(document.querySelector(selector)).color)"""
        )


@pytest.mark.urls("tests.loyalty.csp_probe_urls")
def test_the_browser_check_fails_on_inline_script_and_style(server):
    seen = {}
    with pytest.raises(AssertionError) as failure:
        visit_probe(server.url, seen)

    # The policy blocked them all: nothing ran, no colour applied...
    assert seen == {"ran": [None, None, None], "colours": ["rgb(0, 0, 0)", "rgb(0, 0, 0)"]}
    # ...and the check failed the test, naming each violation.
    report = str(failure.value)
    assert "/csp-probe/" in report
    for directive in ("script-src-elem", "script-src-attr", "style-src-elem", "style-src-attr"):
        assert f"'directive': '{directive}'" in report, (directive, report)
    assert "violates the following Content Security Policy directive" in report


def admin_pages(user) -> list[str]:
    """Every admin page a superuser can open without posting: the index, each model's change
    list, add form (where adding is allowed) and first object's change form, and the custom
    pages of members, vouchers and KPIs."""
    request = RequestFactory().get("/admin/")
    request.user = user
    urls = [reverse("admin:index"), reverse("admin:password_change")]
    for model, model_admin in admin.site._registry.items():
        info = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        urls.append(reverse(f"{info}_changelist"))
        if model_admin.has_add_permission(request):
            urls.append(reverse(f"{info}_add"))
        first = model._default_manager.order_by("pk").first()
        if first is not None:
            urls.append(reverse(f"{info}_change", args=[first.pk]))
    member = Member.objects.get(email=DEMO_MEMBER[0])
    voucher = Redemption.objects.filter(member=member).latest("pk")
    urls += [
        reverse("admin:members_member_adjust", args=[member.pk]),
        reverse("admin:members_member_set_tier", args=[member.pk]),
        reverse("admin:rewards_redemption_change", args=[voucher.pk]),
        reverse("admin:rewards_redemption_cancel", args=[voucher.pk]),
        reverse("admin:rewards_redemption_redeem"),
        reverse("admin:analytics_kpirefresh_recompute"),
        f"{reverse('admin:members_member_changelist')}?q=demo",
    ]
    return urls


def test_admin_dashboard_and_api_docs_keep_to_the_policy(server):
    call_command("seed_demo", members=20, months=3, staff_user=True, stdout=io.StringIO())
    staff = StaffUserFactory(username="security")
    member = Member.objects.get(email=DEMO_MEMBER[0])
    adjust_points(member=member, points=5000, reason="browser test", staff_user=None)
    member.refresh_from_db()
    reward = Reward.objects.filter(program=member.program).order_by("points_cost").first()
    voucher = redeem(member=member, reward=reward, channel=Redemption.Channel.PORTAL)
    pages = admin_pages(staff)
    voucher_url = reverse("admin:rewards_redemption_change", args=[voucher.pk])

    with chromium_pages(viewport=DESKTOP, locale="en-GB") as open_page:
        page = open_page()
        page.goto(f"{server.url}/")
        log_in(page, server.url, staff.username)
        for path in pages:
            response = page.goto(f"{server.url}{path}")
            assert response.status == 200, path
            assert page.locator("#content").count() == 1, path

        # The voucher's QR code in the admin: an inline SVG drawn at 12rem.
        page.goto(f"{server.url}{voucher_url}")
        qr = page.locator(".field-voucher_qr svg.voucher-qr").bounding_box()
        assert qr["width"] == qr["height"] == 192
        screenshot(page, "csp-admin-voucher")

        # The KPI dashboard: every chart drawn by the static script.
        page.goto(f"{server.url}/staff/")
        page.wait_for_function("() => window.staffCharts && Object.keys(window.staffCharts).length")
        sizes = page.evaluate(
            """() => Object.entries(window.staffCharts).map(([id, chart]) => {
                const box = chart.canvas.getBoundingClientRect();
                return [id, box.width > 100 && box.height > 100];
            })"""
        )
        assert len(sizes) >= 5
        assert all(drawn for _id, drawn in sizes), sizes
        screenshot(page, "csp-dashboard")

        # Swagger UI: its init script is a separate file; the operations are listed.
        page.goto(f"{server.url}/api/v1/docs/")
        page.locator(".opblock").first.wait_for()
        assert page.locator(".opblock").count() > 5
        assert (
            page.locator(".swagger-ui .info .title")
            .text_content()
            .startswith("Loyalty platform POS API")
        )
        page.locator(".opblock-summary").first.click()
        page.locator(".opblock-body").first.wait_for()
        screenshot(page, "csp-api-docs")
