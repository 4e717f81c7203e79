"""What the real-browser tests share: a live server for one test, and Playwright pages in
Debian's Chromium that fail the test on any request off the site, any script error, and any
Content-Security-Policy violation or Permissions-Policy header error.

Violations are caught two ways, because each can miss one the other sees: Chromium's console
message ("... violates the following Content Security Policy directive ...", logged at once),
and the page's `securitypolicyviolation` events, forwarded by a script that runs before the
page's own (it names the directive and the blocked source). The policy applies to the tests'
own page code too: give `page.wait_for_function` a function (`"() => ..."`), which Playwright
calls as it is, not a bare expression, which it evaluates with `eval` (blocked: no
'unsafe-eval').

pytest-django's `live_server` lives for the whole session and keeps a database connection open
past the test database's teardown, so each browser test starts its own server thread. Pages are
opened only once the test's data is in place: while Playwright's event loop runs in the test's
thread, the ORM would open a connection of its own in the loop's context.
"""

import contextlib
import os
import re
from pathlib import Path

import pytest
from django.conf import settings

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
ARTIFACTS = Path(os.environ.get("BROWSER_ARTIFACTS", settings.BASE_DIR / "var/artifacts/browser"))
OFF_SITE = re.compile(r"^(?!http://(localhost|127\.0\.0\.1)).*")
# Console messages that fail a test: a CSP violation, or a Permissions-Policy header the browser
# could not apply (a feature name it does not know).
POLICY_MESSAGE = re.compile(r"Content Security Policy|Permissions-Policy")
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.__reportPolicyViolation({
    directive: event.effectiveDirective,
    blocked: event.blockedURI,
    sample: event.sample,
    source: event.sourceFile,
    line: event.lineNumber,
    page: document.location.href,
  });
});
"""


@contextlib.contextmanager
def live_server():
    """A server thread for one test; `.url` is its address."""
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.test.testcases import LiveServerThread

    thread = LiveServerThread("localhost", StaticFilesHandler)
    thread.daemon = True
    thread.start()
    thread.is_ready.wait()
    if thread.error:
        raise thread.error
    thread.url = f"http://localhost:{thread.port}"
    try:
        yield thread
    finally:
        thread.terminate()


@contextlib.contextmanager
def chromium_pages(**context_options):
    """Yields open_page() -> a new Playwright page with these context options (viewport,
    locale...). On exit, asserts that no page asked for anything off the site, that no script
    failed and that no page broke the site's Content-Security-Policy (or its
    Permissions-Policy header)."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: CI installs Debian's chromium (.ci/run)")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    outside, errors, violations = [], [], []
    pages = []

    def on_console(message):
        if POLICY_MESSAGE.search(message.text):
            where = message.page.url if message.page else message.location.get("url")
            violations.append(f"{message.text} ({where})")

    with contextlib.ExitStack() as stack:

        def open_page():
            playwright = stack.enter_context(sync_playwright())
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-dev-shm-usage"]
            )
            stack.callback(browser.close)
            context = browser.new_context(**context_options)
            stack.callback(context.close)
            context.route(
                OFF_SITE, lambda route: (outside.append(route.request.url), route.abort())
            )
            context.expose_binding(
                "__reportPolicyViolation", lambda source, report: violations.append(report)
            )
            context.add_init_script(REPORT_VIOLATIONS)
            context.on("console", on_console)
            page = context.new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            pages.append(page)
            page.set_default_timeout(15_000)
            return page

        yield open_page
        for page in pages:
            if not page.is_closed():
                # Let the events the page has queued reach the binding before the check.
                page.evaluate("() => new Promise((resolve) => setTimeout(resolve, 50))")
    assert outside == [], outside
    assert errors == [], errors
    assert violations == [], violations


def screenshot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
