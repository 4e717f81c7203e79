"""Staff sign-in lockout at /admin/login/ (django-axes, loyalty/admin_lockout.py): by account and
by address, the lockout page, unlocking by a superuser, the reset on success, and a parallel
burst of wrong passwords over real HTTP."""

import threading
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth.hashers import Argon2PasswordHasher
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client, override_settings
from django.urls import reverse

from tests.browser import live_server
from tests.factories import StaffUserFactory
from tests.http_burst import burst, post_form, prepared_session

PASSWORD = "correct horse battery staple"
WRONG_ANSWER = "Please enter the correct username and password for a staff account."
LOCKED = "Too many failed sign-ins: this account or this address is locked for"


@pytest.fixture(autouse=True)
def _clean_cache():
    """The in-flight counters live in the cache, which outlives a test."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def demo(db):
    return StaffUserFactory(username="demo", is_superuser=False)


def staff_client(**extra) -> Client:
    return Client(headers={"accept-language": "en"}, **extra)


def sign_in(client: Client, username: str, password: str):
    return client.post(
        reverse("admin:login"),
        {"username": username, "password": password, "next": reverse("admin:index")},
    )


def limit() -> int:
    return settings.AXES_FAILURE_LIMIT


def test_wrong_passwords_then_the_right_one_is_refused_after_the_limit(demo):
    client = staff_client()
    answers = [sign_in(client, "demo", f"wrong-{n}") for n in range(30)]
    # The first failures get the form's error; the one that reaches the limit and every one
    # after get the lockout page.
    assert [a.status_code for a in answers[: limit() - 1]] == [200] * (limit() - 1)
    assert WRONG_ANSWER in answers[0].content.decode()
    assert {a.status_code for a in answers[limit() - 1 :]} == {429}
    right = sign_in(client, "demo", PASSWORD)
    assert right.status_code == 429
    assert "_auth_user_id" not in client.session
    assert client.get(reverse("admin:index")).status_code == 302  # to the login page


def test_the_lockout_page_says_for_how_long_and_whom_to_ask(demo):
    for n in range(limit()):
        sign_in(staff_client(), "demo", f"wrong-{n}")
    english = sign_in(staff_client(), "demo", PASSWORD)
    assert english.status_code == 429
    page = english.content.decode()
    minutes = settings.ADMIN_LOGIN_COOLOFF_MINUTES
    assert f"{LOCKED} {minutes} minutes." in page
    assert "contact an administrator" in page
    assert "Loyalty platform administration" in page  # the admin's own layout
    french = sign_in(Client(headers={"accept-language": "fr"}), "demo", PASSWORD)
    assert french.status_code == 429
    page = french.content.decode()
    assert f"ce compte ou cette adresse est bloqué pendant {minutes} minutes." in page
    assert "contactez un administrateur" in page


@override_settings(AXES_COOLOFF_TIME=timedelta(minutes=1))
def test_the_lockout_page_says_one_minute_in_the_singular(demo):
    for n in range(limit()):
        sign_in(staff_client(), "demo", f"wrong-{n}")
    assert f"{LOCKED} 1 minute." in sign_in(staff_client(), "demo", PASSWORD).content.decode()


def test_an_address_is_locked_whatever_the_username(demo):
    client = staff_client()
    for n in range(limit()):
        assert sign_in(client, f"guess{n}", "wrong-pass").status_code in (200, 429)
    assert sign_in(client, "demo", PASSWORD).status_code == 429
    # The account itself has no failure: from another address it signs in.
    elsewhere = staff_client(REMOTE_ADDR="10.0.0.9")
    assert sign_in(elsewhere, "demo", PASSWORD).status_code == 302


def test_an_account_is_locked_whatever_the_address(demo):
    for n in range(limit()):
        sign_in(staff_client(REMOTE_ADDR=f"10.0.1.{n + 1}"), "demo", "wrong-pass")
    fresh_address = staff_client(REMOTE_ADDR="10.0.2.1")
    assert sign_in(fresh_address, "demo", PASSWORD).status_code == 429
    # Another account from the same fresh address is not locked.
    StaffUserFactory(username="colleague", is_superuser=False)
    assert sign_in(fresh_address, "colleague", PASSWORD).status_code == 302


@override_settings(CLIENT_IP_HEADER="HTTP_X_FORWARDED_FOR")
def test_the_address_is_the_one_our_proxy_appended(demo):
    from axes.models import AccessAttempt

    for n in range(limit()):
        client = staff_client(HTTP_X_FORWARDED_FOR=f"192.0.2.{n}, 203.0.113.7")
        sign_in(client, f"guess{n}", "wrong-pass")
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"203.0.113.7"}
    # Forging the first address changes nothing; another last address is another client.
    forged = staff_client(HTTP_X_FORWARDED_FOR="198.51.100.1, 203.0.113.7")
    assert sign_in(forged, "demo", PASSWORD).status_code == 429
    other = staff_client(HTTP_X_FORWARDED_FOR="203.0.113.8")
    assert sign_in(other, "demo", PASSWORD).status_code == 302


def test_a_successful_sign_in_forgets_the_accounts_failures(demo):
    client = staff_client()
    for _ in range(2):
        for n in range(limit() - 1):
            assert sign_in(client, "demo", f"wrong-{n}").status_code == 200
        assert sign_in(client, "demo", PASSWORD).status_code == 302
        client.post(reverse("admin:logout"))


def test_signing_in_to_ones_own_account_does_not_wash_the_failures_at_another(demo):
    StaffUserFactory(username="insider", is_superuser=False)
    client = staff_client()
    for n in range(limit() - 1):
        assert sign_in(client, "demo", f"guess-{n}").status_code == 200
    assert sign_in(client, "insider", PASSWORD).status_code == 302
    client.post(reverse("admin:logout"))
    # Only the insider's own failures were forgotten: the next guess at demo reaches the limit.
    assert sign_in(client, "demo", "guess-again").status_code == 429
    assert sign_in(staff_client(REMOTE_ADDR="10.0.4.1"), "demo", PASSWORD).status_code == 429


def test_a_superuser_unlocks_by_deleting_the_attempt_in_the_admin(demo):
    from axes.models import AccessAttempt

    for n in range(limit()):
        sign_in(staff_client(), "demo", f"wrong-{n}")
    assert sign_in(staff_client(), "demo", PASSWORD).status_code == 429

    admin = staff_client()
    admin.force_login(StaffUserFactory(username="boss", is_superuser=True))
    changelist = reverse("admin:axes_accessattempt_changelist")
    listing = admin.get(changelist)
    assert listing.status_code == 200
    assert "demo" in listing.content.decode()
    attempts = list(AccessAttempt.objects.values_list("pk", flat=True))
    assert attempts
    confirm = admin.post(
        changelist, {"action": "delete_selected", "_selected_action": attempts, "post": "yes"}
    )
    assert confirm.status_code == 302
    assert not AccessAttempt.objects.exists()

    client = staff_client()
    assert sign_in(client, "demo", PASSWORD).status_code == 302
    assert client.get(reverse("admin:index")).status_code == 200


def test_staff_with_the_view_permission_read_the_lockouts_but_cannot_unlock(demo):
    from axes.models import AccessAttempt

    for n in range(limit()):
        sign_in(staff_client(), "demo", f"wrong-{n}")
    reader = StaffUserFactory(username="reader", is_superuser=False)
    reader.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="axes",
            codename__in=["view_accessattempt", "view_accessfailurelog", "view_accesslog"],
        )
    )
    client = staff_client()
    client.force_login(reader)
    for name in ("accessattempt", "accessfailurelog"):
        page = client.get(reverse(f"admin:axes_{name}_changelist"))
        assert page.status_code == 200
        assert "demo" in page.content.decode()
    attempt = AccessAttempt.objects.get()
    assert (
        client.post(
            reverse("admin:axes_accessattempt_delete", args=[attempt.pk]), {"post": "yes"}
        ).status_code
        == 403
    )
    assert AccessAttempt.objects.filter(pk=attempt.pk).exists()


def test_axes_reset_username_unlocks_the_account(demo):
    for n in range(limit()):
        sign_in(staff_client(REMOTE_ADDR=f"10.0.1.{n + 1}"), "demo", f"wrong-{n}")
    assert sign_in(staff_client(REMOTE_ADDR="10.0.3.1"), "demo", PASSWORD).status_code == 429
    call_command("axes_reset_username", "demo")
    assert sign_in(staff_client(REMOTE_ADDR="10.0.3.1"), "demo", PASSWORD).status_code == 302


def test_signing_in_through_the_staff_dashboard_redirect_still_works(demo):
    client = staff_client()
    dashboard = client.get("/staff/")
    assert dashboard.status_code == 302
    login_url = dashboard["Location"]
    assert login_url.startswith(reverse("admin:login"))
    signed_in = client.post(login_url, {"username": "demo", "password": PASSWORD})
    assert signed_in.status_code == 302


# A parallel burst over real HTTP ---------------------------------------------------------------


def admin_burst(base_url: str, passwords: list[str], username: str = "demo"):
    forms = [
        {"username": username, "password": password, "next": reverse("admin:index")}
        for password in passwords
    ]
    return burst(f"{base_url}{reverse('admin:login')}", forms)


def admin_sign_in(base_url: str, username: str, password: str):
    login_url = f"{base_url}{reverse('admin:login')}"
    session, token = prepared_session(login_url)
    data = {"username": username, "password": password, "next": reverse("admin:index")}
    return post_form(session, token, login_url, data)


class CountingArgon2Hasher(Argon2PasswordHasher):
    """Django's Argon2 hasher, counting the passwords it verifies: the checks that the lockout
    let through. (The answers cannot tell: axes also answers a checked password with the
    lockout page once the failures it writes reach the limit.)"""

    verified = 0
    lock = threading.Lock()

    def verify(self, password, encoded):
        with CountingArgon2Hasher.lock:
            CountingArgon2Hasher.verified += 1
        return super().verify(password, encoded)


@pytest.mark.postgres
@pytest.mark.concurrency
@pytest.mark.django_db(transaction=True)
@override_settings(PASSWORD_HASHERS=[f"{__name__}.CountingArgon2Hasher"])
def test_a_parallel_burst_of_wrong_passwords_checks_at_most_the_limit():
    StaffUserFactory(username="demo", is_superuser=False)
    CountingArgon2Hasher.verified = 0
    with live_server() as server:
        answers = admin_burst(server.url, [f"wrong-{n}" for n in range(40)])
        statuses = [a.status_code for a in answers]
        assert set(statuses) <= {200, 429}, statuses
        # At most `limit` passwords were checked; the others got the lockout page unchecked.
        assert CountingArgon2Hasher.verified <= limit(), statuses
        assert statuses.count(429) >= 40 - limit(), statuses
        assert all(LOCKED in a.text for a in answers if a.status_code == 429)

        # Once the limit is reached, the right password is refused, alone or inside a burst.
        assert admin_sign_in(server.url, "demo", PASSWORD).status_code == 429
        mixed = admin_burst(server.url, [PASSWORD if n % 4 == 0 else "wrong" for n in range(20)])
        assert [a.status_code for a in mixed] == [429] * 20
        assert CountingArgon2Hasher.verified <= limit()
