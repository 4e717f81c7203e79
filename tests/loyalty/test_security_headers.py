"""Security headers: every kind of page carries the site's Content-Security-Policy and
Permissions-Policy, no template holds inline script or style, and the language cookie is
same-site, hidden from scripts and (in production) sent over HTTPS only.

What a browser does with the policy is checked in the browser tests (tests/browser.py fails any
of them on a violation; tests/loyalty/test_csp_browser.py walks the admin, the dashboard and the
API documentation).
"""

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client

from tests.factories import ProgramFactory

from .test_settings import manage, strong_secret

ROOT = Path(__file__).resolve().parents[2]

EXPECTED_CSP = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "font-src": ["'self'"],
    "connect-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'self'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}
DENIED_FEATURES = {"camera", "microphone", "geolocation", "payment", "usb", "serial", "hid"}


def directives(header: str) -> dict[str, list[str]]:
    """A policy header as {directive: [sources]}."""
    parsed = {}
    for part in header.split(";"):
        name, *sources = part.split()
        assert name not in parsed, f"{name} twice in {header}"
        parsed[name] = sources
    return parsed


def permissions(header: str) -> dict[str, str]:
    """A Permissions-Policy header as {feature: allowlist}."""
    return dict(item.strip().split("=", 1) for item in header.split(","))


def assert_security_headers(response):
    assert directives(response["Content-Security-Policy"]) == EXPECTED_CSP
    features = permissions(response["Permissions-Policy"])
    assert {feature for feature, allow in features.items() if allow == "()"} >= DENIED_FEATURES


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", "/", 200),
        ("get", "/portal/boutique/login/", 200),
        ("get", "/admin/login/", 200),
        ("get", "/api/v1/docs/", 200),
        ("post", "/api/v1/purchases/", 401),
        # An error answer that loyalty.middleware rewrites as a problem: the header middleware
        # sits outside it.
        ("get", "/api/v1/no-such-endpoint/", 404),
        ("get", "/healthz", 200),
        ("get", "/no-such-page/", 404),
    ],
)
def test_every_kind_of_page_carries_the_policies(client, method, path, status):
    ProgramFactory(slug="boutique")

    response = getattr(client, method)(path)

    assert response.status_code == status
    assert_security_headers(response)


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_page_of_an_unreachable_database_carries_the_policies():
    """The short page that says "retry" while the database cannot be reached."""
    port = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = "1"  # nothing listens there
    try:
        response = Client(raise_request_exception=False).get("/portal/boutique/")
    finally:
        connection.close()
        connection.settings_dict["PORT"] = port

    assert response.status_code == 503
    assert_security_headers(response)


@pytest.mark.django_db
def test_the_policies_cover_a_staff_page(admin_client):
    response = admin_client.get("/admin/members/member/")

    assert response.status_code == 200
    assert_security_headers(response)


@pytest.mark.django_db
def test_the_api_documentation_has_no_inline_script_or_style(client):
    page = client.get("/api/v1/docs/")

    html = page.content.decode()
    scripts = re.findall(r"<script[^>]*>", html)
    assert len(scripts) == 3
    assert all(" src=" in tag for tag in scripts), scripts
    assert "<style" not in html
    assert " style=" not in html

    init = re.search(r'<script src="([^"]*script=[^"]*)"', html).group(1)
    script = client.get(init.replace("&amp;", "&"))
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle(" in script.content.decode()


@pytest.mark.django_db
def test_the_refused_form_page_has_no_inline_style():
    client = Client(enforce_csrf_checks=True)

    response = client.post("/i18n/setlang/", {"language": "en"})

    assert response.status_code == 403
    assert_security_headers(response)
    html = response.content.decode()
    assert "<style" not in html
    assert "CSRF" in html


# Inline code in the templates the site serves. Emails are not served under the policy (mail
# clients need their styles inline).
INLINE = re.compile(
    r"<script(?![^>]*\bsrc=)[^>]*>"  # a script without src
    r"|<style\b"  # a style block
    r"|\sstyle\s*="  # a style attribute
    r"|\son[a-z]+\s*="  # an event handler attribute
    r"|javascript:",  # a javascript: URL
    re.IGNORECASE,
)


def served_templates():
    for folder in [ROOT / "templates", *ROOT.glob("*/templates")]:
        for path in sorted(folder.rglob("*.html")):
            if "emails" not in path.relative_to(folder).parts:
                yield path


def test_templates_hold_no_inline_script_style_or_handler():
    templates = list(served_templates())
    assert len(templates) > 40
    found = [
        f"{path.relative_to(ROOT)}:{html[: match.start()].count(chr(10)) + 1}: {match.group(0)}"
        for path in templates
        for html in [path.read_text()]
        for match in INLINE.finditer(html)
    ]
    assert found == []


def test_the_inline_code_scan_finds_each_kind():
    """The scan above can fail: each kind of inline code is caught, a script file is not."""
    samples = [
        "<script>alert(1)</script>",
        '<script type="module">x()</script>',
        "<style>p { color: red }</style>",
        '<p style="color: red">',
        '<button onclick="x()">',
        '<a href="javascript:x()">',
    ]
    assert [bool(INLINE.search(sample)) for sample in samples] == [True] * len(samples)
    assert not INLINE.search('<script src="/static/staff/dashboard.js"></script>')
    assert not INLINE.search('<p class="onboarding" data-style="x">')


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/i18n/setlang/", "/portal/boutique/language/"])
def test_the_language_cookie_is_same_site_and_hidden_from_scripts(client, path):
    ProgramFactory(slug="boutique")

    response = client.post(path, {"language": "en"})

    assert response.status_code == 302
    cookie = response.cookies[settings.LANGUAGE_COOKIE_NAME]
    assert cookie.value == "en"
    assert cookie["samesite"] == "Lax"
    assert cookie["httponly"] is True


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/i18n/setlang/", "/portal/boutique/language/"])
def test_the_language_cookie_is_secure_when_the_setting_says_so(client, settings, path):
    ProgramFactory(slug="boutique")
    settings.LANGUAGE_COOKIE_SECURE = True

    response = client.post(path, {"language": "en"})

    assert response.cookies[settings.LANGUAGE_COOKIE_NAME]["secure"] is True


def test_production_sends_the_language_cookie_over_https_only(tmp_path):
    """With DEBUG off, the settings make the language cookie Secure, like the session's."""
    result = manage(
        tmp_path,
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings as s; "
        "print(s.LANGUAGE_COOKIE_SECURE, s.SESSION_COOKIE_SECURE, s.LANGUAGE_COOKIE_SAMESITE, "
        "s.LANGUAGE_COOKIE_HTTPONLY)",
        SECRET_KEY=strong_secret(),
        ALLOWED_HOSTS="loyalty.example.com",
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-4:] == ["True", "True", "Lax", "True"]


def test_development_sends_the_language_cookie_over_http_too(tmp_path):
    result = manage(
        tmp_path,
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings as s; print(s.LANGUAGE_COOKIE_SECURE)",
        DEBUG="1",
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "False"
