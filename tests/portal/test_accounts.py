"""Enrolment, email verification, claiming a card, logging in and out, password reset, and the
throttles, through the portal's pages."""

from urllib.parse import urlparse

import pytest
from django.core import mail
from django.test import Client, override_settings

from members.models import Member
from portal.models import MemberAccount

from .conftest import PASSWORD, link_in_last_email, url

EN = {"headers": {"accept-language": "en"}}


def enrol_data(**overrides):
    data = {
        "first_name": "Inès",
        "last_name": "Martin",
        "email": "Ines.Martin@Example.fr",
        "phone": "",
        "birth_date": "1990-05-17",
        "password": PASSWORD,
        "preferred_language": "fr",
        "referral_code": "",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def path_of(link: str) -> str:
    return urlparse(link).path


@pytest.fixture
def visitor():
    return Client(**EN)


def test_enrol_form_asks_consent_separately_and_never_pre_ticked(program, tiers, visitor):
    page = visitor.get(url("enrol")).content.decode()
    assert 'name="marketing_consent"' in page
    consent_input = page.split('name="marketing_consent"')[0].rsplit("<input", 1)[1]
    assert "checked" not in consent_input
    assert 'for="id_email"' in page
    assert 'for="id_password"' in page


def test_enrol_verify_then_log_in(program, tiers, visitor):
    response = visitor.post(url("enrol"), enrol_data())
    assert response.status_code == 302
    assert response["Location"] == url("enrol-done")
    member = Member.objects.get(program=program, email="ines.martin@example.fr")
    assert member.enrolment_channel == "portal"
    assert member.marketing_consent is False
    assert member.tier.name == "Bronze"
    account = member.account
    assert account.email_verified_at is None
    assert account.user.password.startswith("argon2")
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["ines.martin@example.fr"]

    # Not yet verified: the right password is not enough.
    refused = visitor.post(url("login"), {"email": "ines.martin@example.fr", "password": PASSWORD})
    assert refused.status_code == 200
    assert refused.context["unverified"]
    assert "_auth_user_id" not in visitor.session

    verified = visitor.get(path_of(link_in_last_email()))
    assert verified.status_code == 302
    assert verified["Location"] == url("home")
    home = visitor.get(url("home"))
    assert home.status_code == 200
    assert 'data-testid="points-available">0<' in home.content.decode()
    account.refresh_from_db()
    assert account.email_verified_at is not None


def test_marketing_consent_is_recorded_with_its_time(program, tiers, visitor):
    visitor.post(url("enrol"), enrol_data(marketing_consent="on"))
    member = Member.objects.get(email="ines.martin@example.fr")
    assert member.marketing_consent is True
    assert member.marketing_consent_at is not None


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"email": "not-an-email"}, "email", "Enter a valid email address."),
        ({"email": ""}, "email", "This field is required."),
        ({"first_name": ""}, "first_name", "This field is required."),
        ({"password": "12345678901"}, "password", "entirely numeric"),
        ({"password": "short"}, "password", "too short"),
        ({"referral_code": "NOSUCH"}, "referral_code", "This referral code is unknown."),
        ({"birth_date": "2999-01-01"}, "birth_date", "The birth date must be in the past."),
        ({"preferred_language": "de"}, "preferred_language", "Select a valid choice."),
    ],
)
def test_enrol_errors_name_the_field_and_write_nothing(
    program, tiers, visitor, overrides, field, message
):
    response = visitor.post(url("enrol"), enrol_data(**overrides))
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert field in errors, errors
    assert message in " ".join(errors[field])
    assert not Member.objects.exists()
    assert not MemberAccount.objects.exists()
    assert mail.outbox == []


def test_referral_code_links_the_new_member_to_the_referrer(program, tiers, visitor, member):
    visitor.post(url("enrol"), enrol_data(referral_code=member.referral_code.lower()))
    new = Member.objects.get(email="ines.martin@example.fr")
    assert new.referred_by == member


def test_enrol_with_the_email_of_an_account_says_the_same_and_changes_nothing(
    program, tiers, visitor, member
):
    before = member.account.user.password
    response = visitor.post(url("enrol"), enrol_data(email=member.email, password="Autre-mot-2026"))
    assert response.status_code == 302
    assert response["Location"] == url("enrol-done")
    assert Member.objects.filter(email=member.email).count() == 1
    member.account.user.refresh_from_db()
    assert member.account.user.password == before
    assert "already has an account" in mail.outbox[-1].body or "déjà" in mail.outbox[-1].body


def test_enrol_with_the_email_of_a_till_member_sends_a_claim_link_not_the_typed_password(
    program, tiers, visitor
):
    from tests.factories import enrol

    till = enrol(program, email="ines.martin@example.fr", first_name="Inès")
    visitor.post(url("enrol"), enrol_data())
    account = MemberAccount.objects.get(member=till)
    assert not account.user.has_usable_password()
    assert Member.objects.count() == 1
    # The link lets the owner of the address choose a password.
    confirm = visitor.get(path_of(link_in_last_email()))
    assert confirm.status_code == 302  # Django moves the token out of the URL
    set_form = visitor.get(confirm["Location"])
    assert set_form.context["validlink"]
    done = visitor.post(confirm["Location"], {"new_password1": PASSWORD, "new_password2": PASSWORD})
    assert done.status_code == 302
    assert done["Location"] == url("home")
    account.refresh_from_db()
    assert account.is_verified
    assert account.user.check_password(PASSWORD)


def test_phone_of_another_member_is_refused_on_enrolment(program, tiers, visitor, make_account):
    make_account(phone="+33600000001")
    response = visitor.post(url("enrol"), enrol_data(phone="+33600000001"))
    assert response.status_code == 200
    assert "phone" in response.context["form"].errors
    assert not Member.objects.filter(email="ines.martin@example.fr").exists()


def test_claim_a_card_enrolled_at_the_till(program, tiers, visitor):
    from tests.factories import enrol

    till = enrol(program, email="paul@example.fr", first_name="Paul")
    response = visitor.post(
        url("claim"), {"card_number": till.card_number, "email": "PAUL@example.fr"}
    )
    assert response.status_code == 302
    assert response["Location"] == url("enrol-done")
    assert mail.outbox[-1].to == ["paul@example.fr"]
    confirm = visitor.get(path_of(link_in_last_email()))
    visitor.post(confirm["Location"], {"new_password1": PASSWORD, "new_password2": PASSWORD})
    assert visitor.get(url("home")).status_code == 200
    login = Client().post(url("login"), {"email": "paul@example.fr", "password": PASSWORD})
    assert login.status_code == 302


def test_claim_answers_the_same_when_card_and_email_do_not_match(program, tiers, visitor):
    from tests.factories import enrol

    till = enrol(program, email="paul@example.fr")
    wrong = visitor.post(url("claim"), {"card_number": till.card_number, "email": "x@example.fr"})
    assert wrong.status_code == 302
    assert wrong["Location"] == url("enrol-done")
    assert mail.outbox == []
    assert not MemberAccount.objects.exists()


def test_claim_rejects_a_mistyped_card_number(program, tiers, visitor):
    from tests.factories import enrol

    till = enrol(program, email="paul@example.fr")
    typo = till.card_number[:-1] + str((int(till.card_number[-1]) + 1) % 10)
    response = visitor.post(url("claim"), {"card_number": typo, "email": "paul@example.fr"})
    assert response.status_code == 200
    assert "card_number" in response.context["form"].errors


def test_login_and_logout(program, member, visitor):
    response = visitor.post(url("login"), {"email": member.email.upper(), "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == url("home")
    assert response.cookies["django_language"].value == member.preferred_language
    assert visitor.get(url("home")).status_code == 200
    assert visitor.get(url("logout")).status_code == 405  # logging out is a POST
    visitor.post(url("logout"))
    assert visitor.get(url("home")).status_code == 302


def test_login_goes_back_to_the_page_asked_but_never_off_the_portal(program, member, visitor):
    history = url("history")
    asked = visitor.get(history)
    assert asked["Location"] == f"{url('login')}?next={history}"
    ok = visitor.post(url("login"), {"email": member.email, "password": PASSWORD, "next": history})
    assert ok["Location"] == history
    visitor.post(url("logout"))
    evil = visitor.post(
        url("login"), {"email": member.email, "password": PASSWORD, "next": "https://evil.example/"}
    )
    assert evil["Location"] == url("home")


def test_wrong_password_and_unknown_email_get_the_same_answer(program, member, visitor):
    wrong = visitor.post(url("login"), {"email": member.email, "password": "nope-nope-1"})
    unknown = visitor.post(url("login"), {"email": "nobody@example.fr", "password": "nope-nope-1"})
    assert wrong.status_code == unknown.status_code == 200
    assert wrong.context["form"].non_field_errors() == unknown.context["form"].non_field_errors()
    assert "The email or the password is not right." in wrong.content.decode()


@override_settings(PORTAL_THROTTLES={"login-account": (3, 900), "login-address": (100, 900)})
def test_login_is_throttled_per_account_even_with_the_right_password(program, member, visitor):
    for _ in range(3):
        visitor.post(url("login"), {"email": member.email, "password": "wrong-pass-1"})
    blocked = visitor.post(url("login"), {"email": member.email, "password": PASSWORD})
    assert blocked.status_code == 429
    assert "_auth_user_id" not in visitor.session
    # The same answer for an address that is no account's, once it has failed as often.
    for _ in range(3):
        visitor.post(url("login"), {"email": "ghost@example.fr", "password": "wrong-pass-1"})
    assert (
        visitor.post(url("login"), {"email": "ghost@example.fr", "password": "x"}).status_code
        == 429
    )
    # Another account from the same address is not blocked.
    other = Client(**EN).post(url("login"), {"email": "someone@example.fr", "password": "x"})
    assert other.status_code == 200


@override_settings(PORTAL_THROTTLES={"login-account": (100, 900), "login-address": (4, 900)})
def test_login_is_throttled_per_address(program, member, visitor):
    for n in range(4):
        visitor.post(url("login"), {"email": f"guess{n}@example.fr", "password": "wrong-pass-1"})
    assert (
        visitor.post(url("login"), {"email": member.email, "password": PASSWORD}).status_code == 429
    )
    other_address = Client(REMOTE_ADDR="10.0.0.9", **EN)
    ok = other_address.post(url("login"), {"email": member.email, "password": PASSWORD})
    assert ok.status_code == 302


def test_password_reset_same_answer_and_link_works_once(program, member, visitor):
    unknown = visitor.post(url("password-reset"), {"email": "nobody@example.fr"})
    assert unknown["Location"] == url("password-reset-done")
    assert mail.outbox == []
    known = visitor.post(url("password-reset"), {"email": member.email})
    assert known["Location"] == url("password-reset-done")
    link = path_of(link_in_last_email())
    confirm = visitor.get(link)
    new = "Nouveau-velo-2026"
    done = visitor.post(confirm["Location"], {"new_password1": new, "new_password2": new})
    assert done["Location"] == url("home")
    member.account.user.refresh_from_db()
    assert member.account.user.check_password(new)
    again = Client(**EN).get(link, follow=True)
    assert again.context["validlink"] is False


def test_password_reset_form_errors(program, member, visitor):
    visitor.post(url("password-reset"), {"email": member.email})
    confirm = visitor.get(path_of(link_in_last_email()))
    response = visitor.post(confirm["Location"], {"new_password1": "abc", "new_password2": "abd"})
    assert response.status_code == 200
    assert "new_password2" in response.context["form"].errors
    member.account.user.refresh_from_db()
    assert member.account.user.check_password(PASSWORD)


@override_settings(PORTAL_THROTTLES={"email-account": (2, 3600), "email-address": (100, 3600)})
def test_password_reset_emails_are_throttled_per_account(program, member, visitor):
    for _ in range(2):
        visitor.post(url("password-reset"), {"email": member.email})
    assert len(mail.outbox) == 2
    blocked = visitor.post(url("password-reset"), {"email": member.email})
    assert blocked.status_code == 429
    assert len(mail.outbox) == 2


def test_a_reset_link_of_another_program_does_not_work_here(program, member, visitor):
    from tests.factories import ProgramFactory

    ProgramFactory(slug="autre")
    visitor.post(url("password-reset"), {"email": member.email})
    link = path_of(link_in_last_email()).replace("/portal/boutique/", "/portal/autre/")
    assert visitor.get(link, follow=True).context["validlink"] is False


def test_verification_link_tampered_or_expired(program, tiers, visitor):
    visitor.post(url("enrol"), enrol_data())
    link = path_of(link_in_last_email())
    tampered = link[:-3] + ("aaa" if not link.endswith("aaa/") else "bbb") + "/"
    assert visitor.get(tampered).status_code == 400
    with override_settings(PORTAL_VERIFY_EMAIL_DAYS=0):
        import time

        time.sleep(1.1)
        assert visitor.get(link).status_code == 400


def test_resend_verification(program, tiers, visitor):
    visitor.post(url("enrol"), enrol_data())
    response = visitor.post(url("verify-resend"), {"email": "ines.martin@example.fr"})
    assert response["Location"] == url("enrol-done")
    assert len(mail.outbox) == 2
    # Unknown addresses: the same answer, no email.
    visitor.post(url("verify-resend"), {"email": "nobody@example.fr"})
    assert len(mail.outbox) == 2


def test_forms_need_the_csrf_token(program, member):
    strict = Client(enforce_csrf_checks=True)
    assert (
        strict.post(url("login"), {"email": member.email, "password": PASSWORD}).status_code == 403
    )
    assert strict.post(url("enrol"), enrol_data()).status_code == 403


def test_unknown_or_closed_program_is_404(db, visitor):
    assert visitor.get(url("login", program="nope")).status_code == 404


@override_settings(
    CLIENT_IP_HEADER="HTTP_X_FORWARDED_FOR",
    PORTAL_THROTTLES={"login-account": (100, 900), "login-address": (2, 900)},
)
def test_behind_a_proxy_the_address_is_the_one_our_proxy_added(program, member):
    def attempt(forwarded):
        return Client(HTTP_X_FORWARDED_FOR=forwarded, **EN).post(
            url("login"), {"email": "x@example.fr", "password": "wrong-pass-1"}
        )

    # A client cannot dodge the counter by forging the first addresses of the header.
    attempt("1.1.1.1, 203.0.113.7")
    attempt("2.2.2.2, 203.0.113.7")
    assert attempt("3.3.3.3, 203.0.113.7").status_code == 429
    assert attempt("203.0.113.8").status_code == 200


@override_settings(PORTAL_THROTTLES={"email-account": (2, 3600), "email-address": (100, 3600)})
def test_joining_again_and_again_with_someones_address_is_throttled(program, member, visitor):
    for _ in range(2):
        visitor.post(url("enrol"), enrol_data(email=member.email))
    assert len(mail.outbox) == 2
    assert visitor.post(url("enrol"), enrol_data(email=member.email)).status_code == 429
    assert len(mail.outbox) == 2


def test_an_email_change_to_an_address_taken_meanwhile_is_refused(program, member, make_account):
    from members.models import Member

    client = Client(**EN)
    client.force_login(member.account.user)
    client.post(url("profile"), {"action": "email", "email-email": "late@example.fr"})
    link = path_of(link_in_last_email())
    other = make_account()
    Member.objects.filter(pk=other.pk).update(email="late@example.fr")
    assert client.get(link).status_code == 400
    member.refresh_from_db()
    assert member.email != "late@example.fr"
