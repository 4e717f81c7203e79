"""Bursts of form posts over real HTTP, for the login throttle and lockout tests: each post from
a browser of its own (session, CSRF cookie and token), all released at the same instant."""

import re
import threading

import requests

CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def prepared_session(page_url: str, language: str = "en") -> tuple[requests.Session, str]:
    """A new browser that has loaded the form at `page_url`: its session and the form's token."""
    session = requests.Session()
    session.headers["Accept-Language"] = language
    page = session.get(page_url, timeout=30)
    page.raise_for_status()
    return session, CSRF_FIELD.search(page.text).group(1)


def post_form(session: requests.Session, token: str, url: str, data: dict) -> requests.Response:
    return session.post(
        url, data={"csrfmiddlewaretoken": token, **data}, allow_redirects=False, timeout=120
    )


def burst(url: str, forms: list[dict]) -> list[requests.Response]:
    """POST every form to `url` at once, each from its own browser, in its own thread; the
    answers in the order of `forms`."""
    prepared = [prepared_session(url) for _ in forms]
    barrier = threading.Barrier(len(forms))
    answers: list = [None] * len(forms)

    def run(i):
        session, token = prepared[i]
        barrier.wait()
        try:
            answers[i] = post_form(session, token, url, forms[i])
        except Exception as exc:  # surfaced by the callers' assertions
            answers[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(forms))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert not any(thread.is_alive() for thread in threads), "a request is stuck"
    errors = [answer for answer in answers if isinstance(answer, Exception)]
    assert not errors, errors
    return answers
