"""Rewards and vouchers over the POS API: the catalogue, redeeming at the till (Idempotency-Key
required), validating and using a voucher exactly once (`use/`, and its alias `redeem/` kept
for existing tills); every error in the problem shape, with nothing written."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from members import services as member_services
from members.ledger import find_mismatches
from members.models import PointsEntry
from rewards import services
from rewards.models import Redemption, Reward
from tests.factories import (
    ProgramFactory,
    StaffUserFactory,
    StoreFactory,
    TierFactory,
    enrol,
    make_api_key,
)
from tests.members.helpers import assert_problem

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(db):
    program = ProgramFactory(slug="shop-program")
    base = TierFactory(program=program, name="Base", rank=0)
    gold = TierFactory(program=program, name="Gold", rank=1, qualify_threshold=Decimal("500"))
    store = StoreFactory(program=program, slug="till-1")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {make_api_key(store)}")
    member = enrol(program, email="ana@example.fr", first_name="Ana", last_name="Lopez")
    member_services.adjust_points(
        member=member, points=1000, reason="welcome", staff_user=StaffUserFactory()
    )
    voucher10 = Reward.objects.create(
        program=program,
        name_fr="Bon de 10 €",
        name_en="10 € voucher",
        kind=Reward.Kind.DISCOUNT_AMOUNT,
        value=Decimal("10"),
        points_cost=400,
        cost_amount=Decimal("10"),
        display_order=1,
    )
    gold_only = Reward.objects.create(
        program=program,
        name_fr="Soirée privée",
        kind=Reward.Kind.GIFT,
        points_cost=300,
        cost_amount=Decimal("25"),
        stock=3,
        display_order=2,
    )
    gold_only.tiers.add(gold)
    return {
        "program": program,
        "store": store,
        "client": client,
        "member": member,
        "voucher10": voucher10,
        "gold_only": gold_only,
        "base": base,
        "gold": gold,
    }


def redeem(shop, reward_id, key="k-1", card=None):
    return shop["client"].post(
        f"/api/v1/members/{card or shop['member'].card_number}/redemptions/",
        {"reward_id": reward_id},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )


def counts():
    return (Redemption.objects.count(), PointsEntry.objects.count())


def test_catalogue_as_a_member_sees_it(shop, django_assert_max_num_queries):
    Reward.objects.create(
        program=shop["program"],
        name_fr="Ancienne offre",
        kind=Reward.Kind.GIFT,
        points_cost=10,
        cost_amount=Decimal("1"),
        valid_until=timezone.now() - timedelta(days=1),
    )
    with django_assert_max_num_queries(6):
        response = shop["client"].get(
            "/api/v1/rewards/", {"card_number": shop["member"].card_number}
        )
    assert response.status_code == 200
    body = response.json()
    assert [r["name_fr"] for r in body] == ["Bon de 10 €", "Soirée privée"]  # no expired offer
    assert body[0]["available"] is True
    assert body[0]["unavailable_reason"] is None
    assert body[1]["tiers"] == ["Gold"]
    assert body[1]["available"] is False
    assert body[1]["unavailable_reason"] == "tier_not_allowed"
    plain = shop["client"].get("/api/v1/rewards/").json()
    assert plain[0]["available"] is None


def test_redeem_at_the_till_then_validate_and_use_once(shop):
    response = redeem(shop, shop["voucher10"].pk)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "issued"
    assert body["valid"] is True
    assert body["points_available"] == 600
    assert body["reward"]["value"] == "10.00"
    code = body["code"]
    assert len(code) == 14
    assert code.count("-") == 2

    # The same Idempotency-Key again: the first answer, byte for byte, and no second voucher.
    again = redeem(shop, shop["voucher10"].pk)
    assert again.status_code == 201
    assert again.content == response.content
    assert Redemption.objects.count() == 1

    check = shop["client"].get(f"/api/v1/vouchers/{code.lower()}/")
    assert check.status_code == 200
    assert check.json()["card_number"] == shop["member"].card_number
    assert check.json()["member_name"] == "Ana Lopez"

    used = shop["client"].post(
        f"/api/v1/vouchers/{code}/use/", {"receipt_id": "R-77"}, format="json"
    )
    assert used.status_code == 200, used.content
    assert used.json()["status"] == "used"
    assert used.json()["used_receipt_id"] == "R-77"
    assert used.json()["used_store"] == "till-1"
    replay = shop["client"].post(
        f"/api/v1/vouchers/{code}/use/", {"receipt_id": "R-77"}, format="json"
    )
    assert replay.status_code == 200
    assert replay.json() == used.json()
    other = shop["client"].post(
        f"/api/v1/vouchers/{code}/use/", {"receipt_id": "R-78"}, format="json"
    )
    assert_problem(other, 409, "voucher_already_used")
    assert Redemption.objects.get().used_receipt_id == "R-77"
    assert find_mismatches() == []


@pytest.mark.parametrize(("first", "then"), [("redeem", "use"), ("use", "redeem")])
def test_the_redeem_alias_answers_as_use_does(shop, first, then):
    """`vouchers/<code>/redeem/` is `use/` kept for existing tills: the same answers, and each
    sees what the other did (a replay, then a voucher already used)."""
    voucher = services.redeem(member=shop["member"], reward=shop["voucher10"], channel="pos")
    url = "/api/v1/vouchers/{code}/{action}/"
    used = shop["client"].post(
        url.format(code=voucher.code, action=first), {"receipt_id": "R-1"}, format="json"
    )
    assert used.status_code == 200, used.content
    assert (used.json()["status"], used.json()["used_receipt_id"]) == ("used", "R-1")
    replay = shop["client"].post(
        url.format(code=voucher.code, action=then), {"receipt_id": "R-1"}, format="json"
    )
    assert (replay.status_code, replay.json()) == (200, used.json())
    other = shop["client"].post(
        url.format(code=voucher.code, action=then), {"receipt_id": "R-2"}, format="json"
    )
    assert_problem(other, 409, "voucher_already_used")


def test_redeem_needs_an_idempotency_key(shop):
    before = counts()
    response = shop["client"].post(
        f"/api/v1/members/{shop['member'].card_number}/redemptions/",
        {"reward_id": shop["voucher10"].pk},
        format="json",
    )
    assert_problem(response, 428, "idempotency_key_required")
    assert counts() == before


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("not_enough_points", 422, "not_enough_points"),
        ("tier_not_allowed", 422, "tier_not_allowed"),
        ("out_of_stock", 422, "out_of_stock"),
        ("limit_reached", 422, "limit_reached"),
        ("not_yet_valid", 422, "reward_not_available"),
        ("no_longer_valid", 422, "reward_not_available"),
        ("inactive", 422, "reward_not_available"),
        ("unknown_reward", 404, "reward_not_found"),
        ("other_program_reward", 404, "reward_not_found"),
        ("unknown_card", 404, "member_not_found"),
        ("suspended", 422, "member_not_active"),
        ("bad_body", 400, "invalid"),
    ],
)
def test_redeem_errors_write_nothing(shop, case, status, code):
    reward = shop["voucher10"]
    card = None
    now = timezone.now()
    if case == "not_enough_points":
        reward.points_cost = 5000
    elif case == "tier_not_allowed":
        reward = shop["gold_only"]
    elif case == "out_of_stock":
        reward.stock = 0
    elif case == "limit_reached":
        reward.limit_per_member = 1
        reward.save()
        services.redeem(member=shop["member"], reward=reward, channel="pos")
    elif case == "not_yet_valid":
        reward.valid_from = now + timedelta(days=1)
    elif case == "no_longer_valid":
        reward.valid_until = now - timedelta(seconds=1)
    elif case == "inactive":
        reward.is_active = False
    elif case == "unknown_card":
        card = "0000000000000"
    elif case == "suspended":
        shop["member"].status = "suspended"
        shop["member"].save()
    reward.save()
    reward_id = reward.pk
    if case == "unknown_reward":
        reward_id = 999_999
    elif case == "other_program_reward":
        reward_id = Reward.objects.create(
            program=ProgramFactory(),
            name_fr="Ailleurs",
            kind=Reward.Kind.GIFT,
            points_cost=1,
            cost_amount=Decimal("1"),
        ).pk
    stock_before = Reward.objects.get(pk=reward.pk).stock
    before = counts()
    balance = type(shop["member"]).objects.get(pk=shop["member"].pk).points_available
    if case == "bad_body":
        response = shop["client"].post(
            f"/api/v1/members/{shop['member'].card_number}/redemptions/",
            {"reward_id": "one"},
            format="json",
            HTTP_IDEMPOTENCY_KEY="bad",
        )
    else:
        response = redeem(shop, reward_id, key=f"key-{case}", card=card)
    problem = assert_problem(response, status, code)
    if case == "bad_body":
        assert problem["field"] == "reward_id"
    assert counts() == before
    assert Reward.objects.get(pk=reward.pk).stock == stock_before
    member = type(shop["member"]).objects.get(pk=shop["member"].pk)
    assert member.points_available == balance
    assert find_mismatches() == []


@pytest.mark.parametrize(
    ("state", "status", "code"),
    [
        ("unknown", 404, "voucher_not_found"),
        ("other_program", 404, "voucher_not_found"),
        ("expired", 422, "voucher_expired"),
        ("cancelled", 422, "voucher_cancelled"),
        ("bad_receipt", 400, "invalid"),
    ],
)
@pytest.mark.parametrize("action", ["use", "redeem"])
def test_use_errors_write_nothing(shop, state, status, code, action):
    voucher = services.redeem(member=shop["member"], reward=shop["voucher10"], channel="pos")
    path_code = voucher.code
    if state == "unknown":
        path_code = "ZZZZZZZZZZZZ"
    elif state == "other_program":
        program = ProgramFactory()
        stranger = enrol(program, email="x@example.fr")
        member_services.adjust_points(
            member=stranger, points=10, reason="t", staff_user=StaffUserFactory()
        )
        reward = Reward.objects.create(
            program=program,
            name_fr="Ailleurs",
            kind=Reward.Kind.GIFT,
            points_cost=1,
            cost_amount=Decimal("1"),
        )
        path_code = services.redeem(member=stranger, reward=reward, channel="pos").code
    elif state == "expired":
        Redemption.objects.filter(pk=voucher.pk).update(
            expires_at=timezone.now() - timedelta(minutes=1)
        )
    elif state == "cancelled":
        services.cancel(redemption=voucher, reason="customer changed mind")
    receipt = "" if state == "bad_receipt" else "R-1"
    before = list(Redemption.objects.order_by("pk").values())
    response = shop["client"].post(
        f"/api/v1/vouchers/{path_code}/{action}/", {"receipt_id": receipt}, format="json"
    )
    assert_problem(response, status, code)
    assert list(Redemption.objects.order_by("pk").values()) == before


def test_validate_shows_an_expired_voucher_as_expired(shop):
    voucher = services.redeem(member=shop["member"], reward=shop["voucher10"], channel="pos")
    Redemption.objects.filter(pk=voucher.pk).update(expires_at=timezone.now())
    body = shop["client"].get(f"/api/v1/vouchers/{voucher.code}/").json()
    assert body["status"] == "expired"
    assert body["valid"] is False
