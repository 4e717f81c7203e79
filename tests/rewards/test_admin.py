"""Staff admin of rewards and vouchers: pages load in a bounded number of queries, tiers stay in
the reward's program, an open form does not undo the stock moved by redemptions, vouchers are
read-only and show their QR code, and "Cancel voucher" refunds through the service, only for an
issued voucher, with a reason, for staff allowed to change vouchers."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from members.ledger import find_mismatches
from rewards import services
from rewards.models import Redemption, Reward
from rewards.qr import qr_svg
from tests.factories import ProgramFactory, StaffUserFactory, TierFactory

pytestmark = pytest.mark.django_db

REWARDS = reverse("admin:rewards_reward_changelist")
VOUCHERS = reverse("admin:rewards_redemption_changelist")


@pytest.fixture(autouse=True)
def english(settings):
    """Pages in English (the default language is French), so the tests read the source strings."""
    settings.LANGUAGE_CODE = "en"


def staff_client(client, *perms):
    user = StaffUserFactory(is_superuser=False)
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client.force_login(user)
    return client, user


def voucher_url(redemption):
    return reverse("admin:rewards_redemption_change", args=[redemption.pk])


def cancel_url(redemption):
    return reverse("admin:rewards_redemption_cancel", args=[redemption.pk])


def reward_url(reward):
    return reverse("admin:rewards_reward_change", args=[reward.pk])


@pytest.fixture
def voucher(member, make_reward):
    reward = make_reward(name_fr="Bon de 10 €", points_cost=300, stock=5)
    return services.redeem(member=member, reward=reward, channel=Redemption.Channel.PORTAL)


def reward_form_data(reward=None, **overrides):
    """What the admin's reward form posts, for `reward` (or a new one)."""
    data = {
        "kind": Reward.Kind.GIFT,
        "is_active": "on",
        "display_order": "0",
        "name_fr": "Coffret",
        "name_en": "Gift box",
        "description_fr": "",
        "description_en": "",
        "value": "",
        "sku": "",
        "partner_name": "",
        "voucher_valid_days": "90",
        "points_cost": "200",
        "cost_amount": "6.50",
        "stock": "",
        "initial-stock": "",
        "limit_per_member": "",
        "limit_period": Reward.LimitPeriod.LIFETIME,
        "valid_from_0": "",
        "valid_from_1": "",
        "valid_until_0": "",
        "valid_until_1": "",
    }
    if reward is not None:
        data.update(
            kind=reward.kind,
            name_fr=reward.name_fr,
            points_cost=str(reward.points_cost),
            cost_amount=str(reward.cost_amount),
            stock="" if reward.stock is None else str(reward.stock),
        )
        data["initial-stock"] = data["stock"]
        data["tiers"] = [str(t.pk) for t in reward.tiers.all()]
    data.update(overrides)
    return data


# The QR code ------------------------------------------------------------------------------------


def test_qr_svg_is_a_scalable_titled_svg_and_deterministic():
    svg = qr_svg("K7M2P9QX4HTR", title="Voucher K7M2-P9QX-4HTR")
    assert svg.startswith("<svg")
    assert svg.rstrip().endswith("</svg>")
    assert 'role="img"' in svg
    assert "<title>Voucher K7M2-P9QX-4HTR</title>" in svg
    assert "viewBox=" in svg
    assert "width=" not in svg.split(">", 1)[0]  # scales to its box
    assert 'fill="#fff"' in svg  # a white background under the quiet zone
    assert 'stroke="#000"' in svg
    assert svg == qr_svg("K7M2P9QX4HTR", title="Voucher K7M2-P9QX-4HTR")
    assert svg != qr_svg("K7M2P9QX4HTS", title="Voucher K7M2-P9QX-4HTR")


def test_qr_svg_escapes_the_title_and_has_a_default_one():
    assert "<title>a &lt;b&gt; &amp; c</title>" in qr_svg("X", title="a <b> & c")
    assert "K7M2P9QX4HTR</title>" in qr_svg("K7M2P9QX4HTR")
    with pytest.raises(ValueError, match="non-empty"):
        qr_svg("")


def test_qr_svg_has_a_four_module_quiet_zone():
    # Version 1 is 21 modules wide: the view box adds 4 on each side.
    assert 'viewBox="0 0 29 29"' in qr_svg("K7M2P9QX4HTR")


# Rewards ----------------------------------------------------------------------------------------


def test_reward_list_shows_counts_costs_and_unlimited_stock(
    admin_client, member, make_member, make_reward, store
):
    counted = make_reward(name_fr="Bon de 5 €", points_cost=100, cost_amount=Decimal("5.00"))
    make_reward(name_fr="Atelier", points_cost=100, stock=7)
    other = make_member(1000)
    used = services.redeem(member=member, reward=counted, channel="portal")
    services.use_voucher(program=member.program, code=used.code, store=store, receipt_id="R1")
    services.redeem(member=member, reward=counted, channel="portal")
    cancelled = services.redeem(member=other, reward=counted, channel="portal")
    services.cancel(redemption=cancelled, reason="mistake")

    response = admin_client.get(REWARDS)
    assert response.status_code == 200
    rows = {r.name_fr: r for r in response.context["cl"].result_list}
    assert rows["Bon de 5 €"]._redeemed == 2  # the cancelled one is not counted
    assert rows["Bon de 5 €"]._used == 1
    assert rows["Bon de 5 €"]._redeemed_cost == Decimal("10.00")
    assert rows["Atelier"]._redeemed == 0
    assert rows["Atelier"]._redeemed_cost == 0
    assert "unlimited" in response.text
    assert ">7<" in response.text
    assert "illimité" in admin_client.get(REWARDS, HTTP_ACCEPT_LANGUAGE="fr").text


def test_reward_list_takes_a_bounded_number_of_queries(
    admin_client, make_member, make_reward, tiers, django_assert_max_num_queries
):
    member = make_member(10_000)
    for i in range(3):
        reward = make_reward(name_fr=f"Cadeau {i}", tiers=[tiers[0]])
        services.redeem(member=member, reward=reward, channel="portal")

    def count(params):
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(REWARDS, params).status_code == 200
        return len(queries)

    few = count({})
    for i in range(40):
        reward = make_reward(name_fr=f"Autre {i}", stock=i, tiers=list(tiers[: i % 3]))
        if i % 4 == 1:
            services.redeem(member=member, reward=reward, channel="portal")
    assert count({}) == few
    with django_assert_max_num_queries(8):
        assert admin_client.get(REWARDS).status_code == 200
    with django_assert_max_num_queries(8):
        response = admin_client.get(REWARDS, {"tiers__id__exact": tiers[0].pk, "q": "Cadeau"})
    # Filtering on a tier does not multiply the counts.
    assert [r._redeemed for r in response.context["cl"].result_list] == [1, 1, 1]


def test_reward_pages_load(admin_client, make_reward, tiers):
    reward = make_reward(tiers=[tiers[1]])
    response = admin_client.get(reward_url(reward))
    assert response.status_code == 200
    # The reward's vouchers are a click away.
    assert f"{VOUCHERS}?reward__id__exact={reward.pk}" in response.text
    assert admin_client.get(reverse("admin:rewards_reward_add")).status_code == 200
    assert admin_client.get(REWARDS, {"q": reward.name_fr}).status_code == 200
    for params in ({"kind__exact": "gift"}, {"is_active__exact": "1"}, {"o": "7"}, {"o": "-9"}):
        assert admin_client.get(REWARDS, params).status_code == 200


def test_adding_a_reward_with_tiers_of_its_program(admin_client, program, tiers):
    response = admin_client.post(
        reverse("admin:rewards_reward_add"),
        reward_form_data(program=str(program.pk), tiers=[str(tiers[1].pk)], stock="12"),
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    reward = Reward.objects.get(name_fr="Coffret")
    assert reward.program == program
    assert list(reward.tiers.all()) == [tiers[1]]
    assert reward.stock == 12


def test_a_tier_of_another_program_is_refused(admin_client, program, tiers, make_reward):
    stranger = TierFactory(program=ProgramFactory(), name="Elsewhere", rank=5)

    response = admin_client.post(
        reverse("admin:rewards_reward_add"),
        reward_form_data(program=str(program.pk), tiers=[str(tiers[0].pk), str(stranger.pk)]),
    )
    assert response.status_code == 200
    assert "Elsewhere" in str(response.context["adminform"].form.errors["tiers"])
    assert not Reward.objects.filter(name_fr="Coffret").exists()

    # On a saved reward only its program's tiers are offered (another one is not a choice).
    reward = make_reward()
    form = admin_client.get(reward_url(reward)).context["adminform"].form
    assert set(form.fields["tiers"].queryset) == set(tiers)
    response = admin_client.post(
        reward_url(reward), reward_form_data(reward, tiers=[str(stranger.pk)])
    )
    assert response.status_code == 200
    assert "tiers" in response.context["adminform"].form.errors
    assert not reward.tiers.exists()


def test_the_program_of_a_saved_reward_cannot_change(admin_client, make_reward):
    reward = make_reward()
    elsewhere = ProgramFactory()
    response = admin_client.post(
        reward_url(reward), reward_form_data(reward, program=str(elsewhere.pk))
    )
    assert response.status_code == 302
    reward.refresh_from_db()
    assert reward.program_id != elsewhere.pk


def test_saving_a_reward_keeps_the_stock_taken_meanwhile(admin_client, member, make_reward):
    reward = make_reward(stock=5, points_cost=100)
    shown = admin_client.get(reward_url(reward)).context["adminform"].form
    assert shown["stock"].value() == 5
    data = reward_form_data(reward, name_en="Renamed")  # shows stock 5, posts it back
    services.redeem(member=member, reward=reward, channel="portal")  # stock 4 meanwhile

    assert admin_client.post(reward_url(reward), data).status_code == 302
    reward.refresh_from_db()
    assert reward.name_en == "Renamed"
    assert reward.stock == 4

    # A restock is applied to what is left: shown 4, typed 10, one more redeemed meanwhile.
    data = reward_form_data(reward, stock="10")
    services.redeem(member=member, reward=reward, channel="portal")
    assert admin_client.post(reward_url(reward), data).status_code == 302
    reward.refresh_from_db()
    assert reward.stock == 9

    # Emptied: unlimited.
    assert admin_client.post(reward_url(reward), reward_form_data(reward, stock="")).status_code
    reward.refresh_from_db()
    assert reward.stock is None


# Vouchers ---------------------------------------------------------------------------------------


def test_voucher_list_and_change_page_show_the_code_and_qr(admin_client, voucher):
    formatted = services.format_code(voucher.code)
    response = admin_client.get(VOUCHERS)
    assert response.status_code == 200
    assert formatted in response.text

    response = admin_client.get(voucher_url(voucher))
    assert response.status_code == 200
    assert formatted in response.text
    assert '<svg role="img"' in response.text
    assert f"<title>QR code of voucher {formatted}</title>" in response.text
    assert cancel_url(voucher) in response.text
    for params in ({"status__exact": "issued"}, {"channel__exact": "portal"}, {"o": "-1"}):
        assert admin_client.get(VOUCHERS, params).status_code == 200


@pytest.mark.parametrize("typed", ["dashed-lowercase", "raw", "prefix", "card", "spaced-card"])
def test_vouchers_are_found_by_code_however_typed_or_by_card(admin_client, voucher, typed):
    code, card = voucher.code, voucher.member.card_number
    term = {
        "dashed-lowercase": services.format_code(code).lower(),
        "raw": code,
        "prefix": code[:6],
        "card": card,
        "spaced-card": f" {card[:4]} {card[4:]} ",
    }[typed]
    response = admin_client.get(VOUCHERS, {"q": term})
    assert list(response.context["cl"].result_list) == [voucher]


def test_voucher_search_misses(admin_client, voucher):
    other = "".join("2" if ch != "2" else "3" for ch in voucher.code)
    response = admin_client.get(VOUCHERS, {"q": services.format_code(other)})
    assert list(response.context["cl"].result_list) == []


def test_vouchers_cannot_be_added_changed_or_deleted(admin_client, voucher):
    assert admin_client.get(reverse("admin:rewards_redemption_add")).status_code == 403
    delete = reverse("admin:rewards_redemption_delete", args=[voucher.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    response = admin_client.post(voucher_url(voucher), {"status": "used"})
    assert response.status_code == 403
    voucher.refresh_from_db()
    assert voucher.status == Redemption.Status.ISSUED
    assert Redemption.objects.filter(pk=voucher.pk).exists()


def test_cancel_voucher_refunds_points_and_stock(admin_client, voucher, member):
    member.refresh_from_db()
    assert member.points_available == 700
    response = admin_client.get(cancel_url(voucher))
    assert response.status_code == 200
    assert services.format_code(voucher.code) in response.text

    response = admin_client.post(cancel_url(voucher), {"reason": "  Client changed her mind "})
    assert response.status_code == 302
    assert response.url == voucher_url(voucher)
    voucher.refresh_from_db()
    assert voucher.status == Redemption.Status.CANCELLED
    assert voucher.cancel_reason == "Client changed her mind"
    assert voucher.cancelled_by.username == "admin"
    assert voucher.closed_at is not None
    assert voucher.refund_txn is not None
    member.refresh_from_db()
    assert member.points_available == 1000
    assert voucher.reward.stock == 5
    assert find_mismatches() == []
    # The voucher's page no longer offers to cancel it.
    assert cancel_url(voucher) not in admin_client.get(voucher_url(voucher)).text


@pytest.mark.parametrize("reason", ["", "   "])
def test_cancel_without_a_reason_is_a_form_error_and_writes_nothing(
    admin_client, voucher, snapshot, reason
):
    before = snapshot()
    response = admin_client.post(cancel_url(voucher), {"reason": reason})
    assert response.status_code == 200
    assert "reason" in response.context["form"].errors
    assert snapshot() == before


@pytest.mark.parametrize("outcome", ["used", "cancelled", "expired"])
def test_only_an_issued_voucher_can_be_cancelled(admin_client, voucher, store, snapshot, outcome):
    if outcome == "used":
        services.use_voucher(
            program=voucher.program, code=voucher.code, store=store, receipt_id="R9"
        )
    elif outcome == "cancelled":
        services.cancel(redemption=voucher, reason="first")
    else:
        Redemption.objects.filter(pk=voucher.pk).update(
            status=Redemption.Status.EXPIRED, closed_at=timezone.now()
        )
    before = snapshot()

    page = admin_client.get(voucher_url(voucher))
    assert cancel_url(voucher) not in page.text
    response = admin_client.post(cancel_url(voucher), {"reason": "too late"})
    assert response.status_code == 200
    errors = response.context["form"].non_field_errors()
    assert "Only an issued voucher can be cancelled" in str(errors)
    assert snapshot() == before


def test_cancelling_needs_the_change_permission(client, voucher, snapshot):
    viewer, _ = staff_client(client, "view_redemption")
    before = snapshot()
    page = viewer.get(voucher_url(voucher))
    assert page.status_code == 200
    assert cancel_url(voucher) not in page.text
    assert viewer.get(cancel_url(voucher)).status_code == 403
    assert viewer.post(cancel_url(voucher), {"reason": "no right"}).status_code == 403
    assert snapshot() == before


def test_staff_with_the_change_permission_can_cancel(client, voucher):
    clerk, user = staff_client(client, "view_redemption", "change_redemption")
    assert cancel_url(voucher) in clerk.get(voucher_url(voucher)).text
    response = clerk.post(cancel_url(voucher), {"reason": "wrong reward"})
    assert response.status_code == 302
    voucher.refresh_from_db()
    assert voucher.status == Redemption.Status.CANCELLED
    assert voucher.cancelled_by == user


def test_staff_without_any_voucher_permission_see_nothing(client, voucher):
    nobody, _ = staff_client(client)
    assert nobody.get(VOUCHERS).status_code == 403
    assert nobody.post(cancel_url(voucher), {"reason": "x"}).status_code == 403
    voucher.refresh_from_db()
    assert voucher.status == Redemption.Status.ISSUED


def test_cancel_of_an_unknown_voucher_redirects(admin_client):
    response = admin_client.get(reverse("admin:rewards_redemption_cancel", args=[999999]))
    assert response.status_code == 302


# Redeeming on a member's behalf ----------------------------------------------------------------


def test_staff_redeem_for_a_member(admin_client, admin_user, member, make_reward):
    reward = make_reward(points_cost=300)
    url = reverse("admin:rewards_redemption_redeem")
    page = admin_client.get(url, {"card": member.card_number})
    assert page.status_code == 200
    assert member.card_number in page.text
    response = admin_client.post(url, {"card_number": member.card_number, "reward": reward.pk})
    assert response.status_code == 302
    voucher = Redemption.objects.get()
    assert voucher.channel == Redemption.Channel.STAFF
    assert voucher.issued_by == admin_user
    member.refresh_from_db()
    assert member.points_available == 700
    assert find_mismatches() == []


@pytest.mark.parametrize(
    ("case", "field"),
    [("unknown_card", "card_number"), ("too_expensive", "reward"), ("other_program", "reward")],
)
def test_staff_redeem_errors_are_form_errors_and_write_nothing(
    admin_client, member, make_reward, case, field
):
    reward = make_reward(points_cost=5000 if case == "too_expensive" else 10)
    if case == "other_program":
        reward.program = ProgramFactory()
        reward.save()
    card = "0000000000000" if case == "unknown_card" else member.card_number
    response = admin_client.post(
        reverse("admin:rewards_redemption_redeem"), {"card_number": card, "reward": reward.pk}
    )
    assert response.status_code == 200
    assert field in response.context["form"].errors
    assert not Redemption.objects.exists()
    assert find_mismatches() == []


def test_staff_redeem_needs_the_add_permission(client, member):
    from django.contrib.auth.models import Permission

    from tests.factories import StaffUserFactory

    user = StaffUserFactory(is_superuser=False)
    user.user_permissions.add(Permission.objects.get(codename="view_redemption"))
    client.force_login(user)
    assert client.get(reverse("admin:rewards_redemption_redeem")).status_code == 403
