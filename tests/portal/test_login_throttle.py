"""The portal's throttles count an attempt before acting on it (portal/throttle.py): of many
login or email requests at once, at most the limit are checked or sent. Member logins are
governed by these throttles alone, never by the staff lockout (django-axes)."""

import pytest
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.test import Client, override_settings

from tests.browser import live_server
from tests.http_burst import burst, post_form, prepared_session

from .conftest import PASSWORD, url

WRONG = "The email or the password is not right."
EN = {"headers": {"accept-language": "en"}}


def login(client: Client, email: str, password: str):
    return client.post(url("login"), {"email": email, "password": password})


def checked_and_wrong(answers) -> int:
    """Answers to a password that was checked and found wrong (a refused one gets 429)."""
    return sum(a.status_code == 200 and WRONG in a.text for a in answers)


@override_settings(PORTAL_THROTTLES={"login-account": (100, 900), "login-address": (3, 900)})
def test_signing_in_with_the_right_password_does_not_use_up_the_address(program, make_account):
    visitor = Client(**EN)
    members = [make_account() for _ in range(5)]
    for member in members:
        assert login(visitor, member.email, PASSWORD).status_code == 302
        visitor.post(url("logout"))
    # Wrong passwords do: after three, even the right one waits.
    for _ in range(3):
        assert login(visitor, members[0].email, "wrong-pass-1").status_code == 200
    assert login(visitor, members[0].email, PASSWORD).status_code == 429


@override_settings(PORTAL_THROTTLES={"login-account": (2, 900), "login-address": (100, 900)})
def test_an_unconfirmed_account_with_the_right_password_is_not_a_failure(program, make_account):
    member = make_account(verified=False)
    visitor = Client(**EN)
    for _ in range(4):
        answer = login(visitor, member.email, PASSWORD)
        assert answer.status_code == 200
        assert answer.context["unverified"] is True


@override_settings(PORTAL_THROTTLES={"login-account": (10, 900), "login-address": (100, 900)})
def test_member_logins_are_no_staff_lockout_business(program, member, settings):
    """More wrong passwords than the staff lockout allows, then the right one: the portal's
    own limit decides, and nothing is written in the staff lockout records."""
    visitor = Client(**EN)
    for _ in range(settings.AXES_FAILURE_LIMIT + 2):
        assert login(visitor, member.email, "wrong-pass-1").status_code == 200
    assert login(visitor, member.email, PASSWORD).status_code == 302
    visitor.post(url("logout"))
    assert not AccessAttempt.objects.exists()
    assert not AccessFailureLog.objects.exists()
    assert not AccessLog.objects.exists()


# Parallel bursts over real HTTP (PostgreSQL and, with REDIS_URL, Redis) ------------------------


@pytest.mark.postgres
@pytest.mark.concurrency
@pytest.mark.django_db(transaction=True)
@override_settings(PORTAL_THROTTLES={"login-account": (5, 900), "login-address": (1000, 900)})
def test_a_parallel_burst_of_wrong_passwords_checks_at_most_the_account_limit(member):
    with live_server() as server:
        login_url = f"{server.url}{url('login')}"
        forms = [{"email": member.email, "password": f"wrong-pass-{n}"} for n in range(40)]
        answers = burst(login_url, forms)
        statuses = [a.status_code for a in answers]
        assert set(statuses) <= {200, 429}, statuses
        assert checked_and_wrong(answers) <= 5, statuses
        assert statuses.count(429) >= 35, statuses

        # The right password is refused after the burst, and inside a second one.
        session, token = prepared_session(login_url)
        right = {"email": member.email, "password": PASSWORD}
        assert post_form(session, token, login_url, right).status_code == 429
        wrong = {"email": member.email, "password": "wrong-pass-x"}
        mixed = burst(login_url, [right if n % 4 == 0 else wrong for n in range(20)])
        assert [a.status_code for a in mixed] == [429] * 20


@pytest.mark.postgres
@pytest.mark.concurrency
@pytest.mark.django_db(transaction=True)
@override_settings(PORTAL_THROTTLES={"login-account": (1000, 900), "login-address": (5, 900)})
def test_a_parallel_burst_over_many_emails_checks_at_most_the_address_limit(member):
    with live_server() as server:
        login_url = f"{server.url}{url('login')}"
        forms = [{"email": f"guess{n}@example.fr", "password": "wrong-pass-1"} for n in range(40)]
        answers = burst(login_url, forms)
        statuses = [a.status_code for a in answers]
        assert checked_and_wrong(answers) <= 5, statuses
        assert statuses.count(429) >= 35, statuses
        session, token = prepared_session(login_url)
        right = {"email": member.email, "password": PASSWORD}
        assert post_form(session, token, login_url, right).status_code == 429


@pytest.mark.postgres
@pytest.mark.concurrency
@pytest.mark.django_db(transaction=True)
@override_settings(PORTAL_THROTTLES={"email-account": (3, 3600), "email-address": (1000, 3600)})
def test_a_parallel_burst_of_reset_requests_sends_at_most_the_account_limit(member, mailoutbox):
    with live_server() as server:
        reset_url = f"{server.url}{url('password-reset')}"
        answers = burst(reset_url, [{"email": member.email} for _ in range(30)])
        statuses = [a.status_code for a in answers]
        assert set(statuses) <= {302, 429}, statuses
        assert statuses.count(302) <= 3, statuses
        assert len(mailoutbox) <= 3
