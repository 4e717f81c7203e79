"""The portal in a real browser: Debian's Chromium driven by Playwright at phone width.

Enrol, confirm the email, log in, see the balance after a purchase posted through the POS API,
redeem a reward, see the voucher's QR code, switch to English, download my data. Every page
keeps to the site's Content-Security-Policy (tests/browser.py fails the test on a violation).
Screenshots are saved as artifacts (BROWSER_ARTIFACTS, default var/artifacts/browser/).
"""

import json
import re
import urllib.request
from decimal import Decimal
from pathlib import Path

import pytest
from django.core import mail
from django.utils import timezone

from tests.browser import chromium_pages, live_server, screenshot
from tests.factories import ProgramFactory, StoreFactory, TierFactory, make_api_key

from .conftest import PASSWORD

PHONE = {"width": 390, "height": 844}

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def portal_server(transactional_db):
    with live_server() as server:
        yield server


@pytest.fixture
def open_phone():
    """open_phone() -> a page in Chromium at phone width, in French (see tests/browser.py)."""
    with chromium_pages(
        viewport=PHONE,
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        locale="fr-FR",
        accept_downloads=True,
    ) as open_page:
        yield open_page


def shot(page, name):
    screenshot(page, f"portal-{name}")


def post_purchase(base_url, api_key, card_number, amount):
    body = json.dumps(
        {
            "receipt_id": "T-0001",
            "card_number": card_number,
            "amount": amount,
            "currency": "EUR",
            "occurred_at": timezone.now().isoformat(),
        }
    ).encode()
    request = urllib.request.Request(  # noqa: S310 (the test's own live server)
        f"{base_url}/api/v1/purchases/",
        data=body,
        headers={"Authorization": f"Api-Key {api_key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (local)
        assert response.status == 201
        return json.loads(response.read())


def test_member_journey_on_a_phone(portal_server, open_phone):
    from rewards.models import Reward

    program = ProgramFactory(slug="boutique", name="Boutique Lumière", return_window_days=0)
    TierFactory(program=program, name="Bronze", rank=0)
    TierFactory(program=program, name="Or", rank=1, qualify_threshold=Decimal("1000"))
    store = StoreFactory(program=program, name="Paris Rivoli")
    api_key = make_api_key(store)
    Reward.objects.create(
        program=program,
        name_fr="Café offert",
        name_en="Free coffee",
        kind=Reward.Kind.GIFT,
        points_cost=100,
        cost_amount=Decimal("1.20"),
    )
    page = open_phone()
    base = f"{portal_server.url}/portal/boutique"

    # Enrol, in French (the browser's language).
    page.goto(f"{base}/enrol/")
    assert page.locator("html").get_attribute("lang") == "fr"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    assert not page.is_checked("#id_marketing_consent")
    page.fill("#id_first_name", "Inès")
    page.fill("#id_last_name", "Martin")
    page.fill("#id_email", "ines@example.fr")
    page.fill("#id_password", PASSWORD)
    shot(page, "1-enrol")
    page.click("form button[type=submit].primary")
    page.wait_for_url(f"{base}/enrol/check-your-email/")
    shot(page, "2-check-your-email")

    # Confirm the address with the link of the email: signed in on the home page.
    link = re.search(r"https?://\S+/verify/\S+/", mail.outbox[-1].body).group(0)
    page.goto(link)
    page.wait_for_url(f"{base}/")
    assert page.text_content("[data-testid=points-available]") == "0"

    # Log out and in again.
    page.click("form.logout button")
    page.wait_for_url(f"{base}/login/")
    page.fill("#id_email", "ines@example.fr")
    page.fill("#id_password", PASSWORD)
    page.click("form button[type=submit].primary")
    page.wait_for_url(f"{base}/")

    # A purchase at the till, through the POS API: the balance shows it.
    page.click(".portal-nav a[href$='/card/']")
    card_number = page.text_content("[data-testid=card-number]").replace(" ", "")
    page.click(".portal-nav a[href$='/boutique/']")
    answer = post_purchase(portal_server.url, api_key, card_number, "250.00")
    assert answer["points_available"] == 250
    page.reload()
    assert page.text_content("[data-testid=points-available]") == "250"
    shot(page, "3-home")

    # The digital card.
    page.click(".portal-nav a[href$='/card/']")
    assert page.text_content("[data-testid=card-number]").replace(" ", "") == card_number
    assert page.locator(".member-card .qr svg").is_visible()
    qr = page.locator(".member-card .qr svg").bounding_box()
    assert qr["width"] == qr["height"] > 200  # drawn by the stylesheet, square, readable
    assert page.locator(".member-card .qr svg path").count() == 2  # background and modules
    shot(page, "4-card")

    # Redeem in one step, with a confirmation; the voucher and its QR code.
    page.click(".portal-nav a[href$='/rewards/']")
    page.click(".catalogue a.button.primary")
    page.click("form button[type=submit].primary")
    page.wait_for_url(re.compile(r".*/vouchers/[A-Z0-9]+/$"))
    assert page.locator("[data-testid=voucher-qr] svg").is_visible()
    qr = page.locator("[data-testid=voucher-qr] svg").bounding_box()
    assert qr["width"] == qr["height"] > 150
    assert re.fullmatch(
        r"[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}", page.text_content("[data-testid=voucher-code]")
    )
    shot(page, "5-voucher")
    page.click(".portal-nav a[href$='/boutique/']")
    assert page.text_content("[data-testid=points-available]") == "150"

    # Switch to English.
    page.select_option("#language-select", "en")
    page.click(".language-switch button")
    page.wait_for_load_state()
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.locator(".portal-nav").get_by_text("My vouchers").is_visible()
    shot(page, "6-english")

    # Download my data.
    page.click(".portal-nav a[href$='/profile/']")
    with page.expect_download() as download_info:
        page.click("a[href$='my-data.json']")
    path = download_info.value.path()
    data = json.loads(Path(path).read_text())
    assert data["profile"]["card_number"] == card_number
    assert data["profile"]["preferred_language"] == "en"
    assert [p["amount"] for p in data["purchases"]] == ["250.00"]
    assert len(data["vouchers"]) == 1
    shot(page, "7-profile")
