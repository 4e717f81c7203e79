"""What the real-browser tests share: a live server for one test, and Playwright pages in
Debian's Chromium that fail the test on any request off the site or any script error.

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
    locale...). On exit, asserts that no page asked for anything off the site and that no
    script failed."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: CI installs Debian's chromium (.ci/run)")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    outside, errors = [], []
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
            page = context.new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.set_default_timeout(15_000)
            return page

        yield open_page
    assert outside == [], outside
    assert errors == [], errors


def screenshot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
