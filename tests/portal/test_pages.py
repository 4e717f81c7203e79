"""The signed-in member's pages: home, history, card, rewards and vouchers, profile, data export,
closing the account, and the language switch."""

import io
import json
import zipfile
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from members import services as member_services
from members.models import Member, PointsEntry
from rewards.models import Redemption
from rewards.services import redeem

from .conftest import PASSWORD, link_in_last_email, signed_in, url


def purchase(store, member, amount="42.00", receipt="R1", when=None):
    return member_services.record_purchase(
        store=store,
        receipt_id=receipt,
        amount=Decimal(amount),
        currency="EUR",
        occurred_at=when or timezone.now() - timedelta(minutes=5),
        card_number=member.card_number,
    )


def test_home_shows_balances_tier_progress_and_latest_activity(
    client_a, member, store, django_assert_max_num_queries
):
    purchase(store, member, "120.00")
    with django_assert_max_num_queries(12):
        response = client_a.get(url("home"), headers={"accept-language": "en"})
    page = response.content.decode()
    assert response.status_code == 200
    assert 'data-testid="points-available">1000<' in page
    assert 'data-testid="points-pending">120<' in page
    assert 'data-testid="tier">Bronze<' in page
    assert "380.00 EUR more to reach Gold" in page
    assert '<progress id="tier-progress" max="100" value="24">' in page
    assert "Purchase of 120.00 EUR" in page


def test_home_query_count_does_not_grow_with_history(
    client_a, member, store, django_assert_max_num_queries
):
    for n in range(30):
        purchase(store, member, "10.00", receipt=f"R{n}")
    with django_assert_max_num_queries(12):
        assert client_a.get(url("home")).status_code == 200


def test_history_is_paginated_and_filtered(client_a, member, store, django_assert_max_num_queries):
    for n in range(25):
        purchase(store, member, "10.00", receipt=f"R{n}")
    with django_assert_max_num_queries(10):
        first = client_a.get(url("history"))
    assert len(first.context["page"].object_list) == 20
    assert first.context["page"].paginator.count == 26  # 25 purchases and the test points
    second = client_a.get(url("history"), {"page": 2})
    assert len(second.context["page"].object_list) == 6
    only_bonuses = client_a.get(url("history"), {"kind": "bonuses"})
    assert [e.kind for e in only_bonuses.context["page"].object_list] == ["adjust"]
    tomorrow = (timezone.localdate() + timedelta(days=1)).isoformat()
    none = client_a.get(url("history"), {"start": tomorrow})
    assert none.context["page"].paginator.count == 0


def test_history_filter_errors(client_a):
    response = client_a.get(
        url("history"), {"start": "2026-05-02", "end": "2026-05-01", "kind": "nonsense"}
    )
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert "kind" in errors
    assert "end" in errors


def test_card_shows_the_number_and_a_qr_code(client_a, member):
    page = client_a.get(url("card")).content.decode()
    number = member.card_number
    assert " ".join(number[i : i + 4] for i in range(0, 13, 4)) in page
    assert "<svg" in page


def test_catalogue_shows_locked_rewards_and_what_unlocks_them(client_a, member, tiers, make_reward):
    make_reward(name_fr="Café", points_cost=100)
    make_reward(name_fr="Salon VIP", points_cost=200, tiers=[tiers[1]])
    make_reward(name_fr="Voyage", points_cost=50000)
    make_reward(name_fr="Épuisé", points_cost=10, stock=0)
    make_reward(name_fr="Fini", points_cost=10, is_active=False)
    response = client_a.get(url("rewards"))
    rows = {r["reward"].name_fr: r for r in response.context["rows"]}
    assert set(rows) == {"Café", "Salon VIP", "Voyage", "Épuisé"}
    assert [t.name for t in rows["Salon VIP"]["locked_by"]] == ["Gold"]
    assert rows["Voyage"]["missing"] == 49000
    assert rows["Épuisé"]["out_of_stock"]
    assert not rows["Café"]["locked_by"]
    assert not rows["Café"]["missing"]


def test_redeem_in_one_step_and_see_the_voucher(client_a, member, make_reward):
    reward = make_reward(points_cost=300)
    confirm = client_a.get(url("reward", pk=reward.pk))
    assert confirm.context["balance_after"] == 700
    token = confirm.context["token"]
    done = client_a.post(url("reward", pk=reward.pk), {"token": token})
    redemption = Redemption.objects.get(member=member)
    assert done.status_code == 302
    assert done["Location"] == url("voucher", code=redemption.code)
    assert redemption.channel == "portal"
    member.refresh_from_db()
    assert member.points_available == 700
    voucher = client_a.get(done["Location"])
    assert "<svg" in voucher.content.decode()
    # The same confirmation sent again gives the same voucher, not a second one.
    again = client_a.post(url("reward", pk=reward.pk), {"token": token})
    assert again["Location"] == done["Location"]
    assert Redemption.objects.filter(member=member).count() == 1
    member.refresh_from_db()
    assert member.points_available == 700
    listing = client_a.get(url("vouchers"))
    assert [r.pk for r in listing.context["page"].object_list] == [redemption.pk]


def test_redeem_refusals_write_nothing(client_a, member, tiers, make_reward):
    expensive = make_reward(points_cost=5000)
    locked = make_reward(points_cost=10, tiers=[tiers[1]])
    for reward in (expensive, locked):
        response = client_a.post(url("reward", pk=reward.pk), {"token": "x" * 32})
        assert response.status_code == 422
        assert response.context["error"]
    assert not Redemption.objects.exists()
    member.refresh_from_db()
    assert member.points_available == 1000
    assert client_a.post(url("reward", pk=expensive.pk), {"token": ""}).status_code == 422


@pytest.mark.postgres
@pytest.mark.concurrency
@pytest.mark.django_db(transaction=True)
def test_a_double_click_redeems_once(program, tiers, make_account, make_reward):
    from tests.concurrency import race

    member = make_account(1000)
    reward = make_reward(points_cost=300)
    clients = [signed_in(member) for _ in range(4)]
    results = race(4, lambda i: clients[i].post(url("reward", pk=reward.pk), {"token": "t" * 32}))
    assert all(r.status_code == 302 for r in results), results
    assert len({r["Location"] for r in results}) == 1
    assert Redemption.objects.filter(member=member).count() == 1
    member.refresh_from_db()
    assert member.points_available == 700
    call_command("check_ledger")


def test_members_reach_only_their_own_data(program, make_account, make_reward, store):
    alice, bob = make_account(1000), make_account(1000)
    reward = make_reward(points_cost=100)
    voucher = redeem(member=alice, reward=reward, channel="portal")
    as_bob = signed_in(bob)
    assert as_bob.get(url("voucher", code=voucher.code)).status_code == 404
    listing = as_bob.get(url("vouchers"))
    assert list(listing.context["page"].object_list) == []
    data = json.loads(as_bob.get(url("data-json")).content)
    assert data["profile"]["card_number"] == bob.card_number
    assert data["vouchers"] == []
    history = as_bob.get(url("history"))
    assert {e.member_id for e in history.context["page"].object_list} == {bob.pk}


def test_pages_need_a_signed_in_member_of_this_program(program, make_account, make_reward, db):
    from django.contrib.auth import get_user_model

    from portal.models import MemberAccount
    from tests.factories import ProgramFactory, StaffUserFactory, TierFactory, enrol

    reward = make_reward()
    names = [
        "home",
        "history",
        "card",
        "rewards",
        "vouchers",
        "profile",
        "data-json",
        "data-csv",
        "close",
    ]
    anonymous = Client()
    for name in names:
        response = anonymous.get(url(name))
        assert response.status_code == 302, name
        assert response["Location"].startswith(url("login")), name
    assert anonymous.get(url("reward", pk=reward.pk)).status_code == 302
    staff = Client()
    staff.force_login(StaffUserFactory())
    assert staff.get(url("home")).status_code == 302
    # A member of another program is a stranger here.
    other = ProgramFactory(slug="ailleurs")
    TierFactory(program=other, rank=0)
    outsider = enrol(other, email="o@example.fr")
    user = get_user_model().objects.create_user(username="o", password=PASSWORD)
    MemberAccount.objects.create(member=outsider, user=user, email_verified_at=timezone.now())
    stranger = Client()
    stranger.force_login(user)
    assert stranger.get(url("home")).status_code == 302
    assert stranger.get(url("home", program="ailleurs")).status_code == 200


def test_profile_changes_and_errors(client_a, member, make_account):
    other = make_account(phone="+33611111111")
    data = {
        "action": "profile",
        "profile-first_name": "Claire",
        "profile-last_name": "Dubois",
        "profile-phone": other.phone,
        "profile-birth_date": "1985-02-03",
        "profile-preferred_language": "en",
    }
    taken = client_a.post(url("profile"), data)
    assert taken.status_code == 422
    assert "phone" in taken.context["profile_form"].errors
    member.refresh_from_db()
    assert member.last_name == ""
    data["profile-phone"] = "+33622222222"
    saved = client_a.post(url("profile"), data)
    assert saved.status_code == 302
    assert saved.cookies["django_language"].value == "en"
    member.refresh_from_db()
    assert (member.last_name, member.phone, member.preferred_language) == (
        "Dubois",
        "+33622222222",
        "en",
    )
    assert str(member.birth_date) == "1985-02-03"


def test_email_change_waits_for_the_new_address_to_confirm(client_a, member, make_account):
    taken = client_a.post(url("profile"), {"action": "email", "email-email": make_account().email})
    assert taken.status_code == 422
    assert "email" in taken.context["email_form"].errors
    client_a.post(url("profile"), {"action": "email", "email-email": "New@Example.fr"})
    member.refresh_from_db()
    assert member.email != "new@example.fr"
    assert mail.outbox[-1].to == ["new@example.fr"]
    from urllib.parse import urlparse

    client_a.get(urlparse(link_in_last_email()).path)
    member.refresh_from_db()
    assert member.email == "new@example.fr"
    assert member.account.user.email == "new@example.fr"
    login = Client().post(url("login"), {"email": "new@example.fr", "password": PASSWORD})
    assert login.status_code == 302


def test_consent_can_be_given_and_withdrawn(client_a, member):
    client_a.post(url("profile"), {"action": "consent", "consent-marketing_consent": "on"})
    member.refresh_from_db()
    given_at = member.marketing_consent_at
    assert member.marketing_consent
    assert given_at
    client_a.post(url("profile"), {"action": "consent"})
    member.refresh_from_db()
    assert member.marketing_consent is False
    assert member.marketing_consent_at >= given_at


def test_download_my_data_as_json_and_csv(client_a, member, store, make_reward):
    purchase(store, member, "42.00")
    redeem(member=member, reward=make_reward(points_cost=100), channel="portal")
    response = client_a.get(url("data-json"))
    assert response["Content-Disposition"].startswith('attachment; filename="my-data-')
    data = json.loads(response.content)
    assert data["profile"]["email"] == member.email
    assert [p["amount"] for p in data["purchases"]] == ["42.00"]
    assert {e["kind"] for e in data["points"]} == {"adjust", "earn", "redeem"}
    assert len(data["vouchers"]) == 1
    archive = zipfile.ZipFile(io.BytesIO(client_a.get(url("data-csv")).content))
    assert set(archive.namelist()) == {
        "profile.csv",
        "purchases.csv",
        "purchase_lines.csv",
        "returns.csv",
        "points.csv",
        "tier_changes.csv",
        "vouchers.csv",
        "emails.csv",
    }
    purchases_csv = archive.read("purchases.csv").decode()
    assert purchases_csv.splitlines()[0].startswith("id,store,receipt_id")
    assert "42.00" in purchases_csv
    assert archive.read("returns.csv").decode().startswith("id,purchase,store")


def test_close_account_erases_personal_data_and_keeps_the_ledger(client_a, member, store):
    purchase(store, member, "42.00")
    wrong = client_a.post(url("close"), {"password": "not-mine", "confirm": "on"})
    assert wrong.status_code == 422
    assert "password" in wrong.context["form"].errors
    unconfirmed = client_a.post(url("close"), {"password": PASSWORD})
    assert unconfirmed.status_code == 422
    assert "confirm" in unconfirmed.context["form"].errors
    member.refresh_from_db()
    assert member.status == Member.Status.ACTIVE
    entries = PointsEntry.objects.filter(member=member).count()

    done = client_a.post(url("close"), {"password": PASSWORD, "confirm": "on"})
    assert done["Location"] == url("closed")
    member.refresh_from_db()
    assert member.status == Member.Status.CLOSED
    assert (member.first_name, member.last_name, member.email, member.phone) == ("", "", "", "")
    assert member.birth_date is None
    assert member.marketing_consent is False
    assert member.points_available == 0
    assert member.points_pending == 42
    assert PointsEntry.objects.filter(member=member).count() == entries + 1
    assert member.purchases.count() == 1
    member.account.user.refresh_from_db()
    assert not member.account.user.is_active
    assert client_a.get(url("home")).status_code == 302
    assert (
        Client()
        .post(url("login"), {"email": "member1@example.fr", "password": PASSWORD})
        .status_code
        == 200
    )
    call_command("check_ledger")


def test_language_switch_keeps_the_members_choice(client_a, member):
    response = client_a.post(url("language"), {"language": "en", "next": url("card")})
    assert response["Location"] == url("card")
    assert response.cookies["django_language"].value == "en"
    member.refresh_from_db()
    assert member.preferred_language == "en"
    page = client_a.get(url("card")).content.decode()
    assert '<html lang="en">' in page
    assert "My card" in page
    off_site = client_a.post(url("language"), {"language": "fr", "next": "https://evil.example/"})
    assert off_site["Location"] == url("home")


def test_program_chooser(db, program, tiers):
    from tests.factories import ProgramFactory

    single = Client().get("/portal/")
    assert single["Location"] == url("home")
    ProgramFactory(slug="second", name="Second")
    many = Client().get("/portal/")
    assert many.status_code == 200
    assert b"Second" in many.content


def test_staff_see_member_accounts_in_the_admin(member, django_assert_max_num_queries):
    from tests.factories import StaffUserFactory

    staff = Client()
    staff.force_login(StaffUserFactory(is_superuser=True))
    with django_assert_max_num_queries(8):
        listing = staff.get("/admin/portal/memberaccount/")
    assert listing.status_code == 200
    assert member.card_number in listing.content.decode() or str(member) in listing.content.decode()
    detail = staff.get(f"/admin/portal/memberaccount/{member.account.pk}/change/")
    assert detail.status_code == 200


@pytest.mark.parametrize(
    ("kind", "reason", "expected"),
    [
        ("expire", "fifo", "Points earned more than 24 months ago"),
        ("expire", "inactivity", "No purchase for 24 months"),
        ("redeem", "voucher ABCD-EFGH-JKLM", "Voucher ABCD-EFGH-JKLM"),
        ("refund", "voucher ABCD-EFGH-JKLM expired", "Voucher ABCD-EFGH-JKLM expired unused"),
        ("refund", "voucher ABCD-EFGH-JKLM cancelled: doublon", "Voucher ABCD-EFGH-JKLM cancelled"),
        ("adjust", "Geste commercial", "Geste commercial"),
    ],
)
def test_history_rows_are_described_for_the_member(program, kind, reason, expected):
    from django.utils import translation

    from portal.views import describe

    program.expiry_months = 24
    with translation.override("en"):
        assert describe(PointsEntry(kind=kind, reason=reason), program) == expected


def test_home_shows_the_campaigns_the_member_qualifies_for(
    client_a, member, program, tiers, django_assert_max_num_queries
):
    from loyalty.models import Campaign

    now = timezone.now()
    weekend = Campaign.objects.create(
        program=program,
        name="Week-end double",
        description="Vos points doublés le week-end.",
        status=Campaign.Status.ACTIVE,
        trigger=Campaign.Trigger.PURCHASE,
        starts_at=now - timedelta(days=1),
        ends_at=now + timedelta(days=10),
        effect=Campaign.Effect.MULTIPLIER,
        effect_value=Decimal("2"),
        weekdays=[5, 6],
        min_basket_amount=Decimal("30"),
    )
    gold_only = Campaign.objects.create(
        program=program,
        name="Gold bonus",
        status=Campaign.Status.ACTIVE,
        trigger=Campaign.Trigger.PURCHASE,
        starts_at=now - timedelta(days=1),
        effect=Campaign.Effect.FIXED,
        effect_value=Decimal("100"),
    )
    gold_only.tiers.set([tiers[1]])
    gold_only.save()
    Campaign.objects.create(
        program=program,
        name="Draft",
        status=Campaign.Status.DRAFT,
        trigger=Campaign.Trigger.PURCHASE,
        starts_at=now - timedelta(days=1),
        effect=Campaign.Effect.FIXED,
        effect_value=Decimal("5"),
    )
    with django_assert_max_num_queries(14):
        response = client_a.get(url("home"), headers={"accept-language": "en"})
    offers = response.context["offers"]
    assert [o["campaign"].name for o in offers] == [weekend.name]
    page = response.content.decode()
    assert "×2 points on your purchases" in page
    assert "On Saturday, Sunday" in page
    assert "From 30.00 EUR of purchase" in page
    assert "Vos points doublés le week-end." in page
