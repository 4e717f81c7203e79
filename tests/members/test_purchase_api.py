"""POST /api/v1/purchases/ and /api/v1/purchases/quote/: errors as problem details that write
nothing, points credited as the rules say, replays answered byte for byte."""

from datetime import datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.core.cache import cache
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

import loyalty.api
from loyalty.models import StoreAPIKey
from loyalty.services import create_store_api_key, revoke_store_api_key
from members.cards import luhn_check_digit
from members.ledger import find_mismatches
from members.models import Member, PointsEntry, Purchase, PurchaseLine
from tests.factories import (
    EarningRuleFactory,
    ProgramFactory,
    StoreFactory,
    TierFactory,
    enrol,
    make_api_key,
)
from tests.members.helpers import assert_problem, pos_client, snapshot

pytestmark = pytest.mark.django_db

URL = "/api/v1/purchases/"
QUOTE_URL = "/api/v1/purchases/quote/"
BREAKDOWN_KEYS = {"code", "name", "factor", "amount", "points", "rule_id"}

# Lines of the basket used throughout: 1 x 30.00 of beauty and 2 x 6.25 of hygiene = 42.50.
TWO_LINES = [
    {"sku": "CREME-50", "category": "beauty", "quantity": "1", "unit_price": "30.00"},
    {"sku": "SAVON-3", "category": "hygiene", "quantity": "2", "unit_price": "6.25"},
]


# Helpers --------------------------------------------------------------------------------------


def other_program_pos(slug="other", **program_kwargs):
    """A second program with its entry tier, a store and an authenticated client."""
    program = ProgramFactory(slug=slug, **program_kwargs)
    TierFactory(program=program, name=f"{slug}-entry", rank=0)
    store = StoreFactory(program=program, slug=f"{slug}-store")
    return program, store, pos_client(store)


def iso(moment: datetime) -> str:
    return moment.isoformat()


def payload(receipt="R-1", card=None, amount="42.50", *, occurred_at=None, lines=None, **extra):
    body = {
        "receipt_id": receipt,
        "amount": amount,
        "currency": "EUR",
        "occurred_at": iso(occurred_at or timezone.now() - timedelta(hours=1)),
        **extra,
    }
    if card is not None:
        body["card_number"] = card
    if lines is not None:
        body["lines"] = lines
    return body


def post(client, body, url=URL, **headers):
    return client.post(url, body, format="json", **headers)


def unknown_valid_card():
    body = "900000000001"
    card = body + luhn_check_digit(body)
    assert not Member.objects.filter(card_number=card).exists()
    return card


# Purchase errors: one test each, nothing written ---------------------------------------------


def test_unknown_card_is_422_and_writes_nothing(api, member):
    before = snapshot()
    response = post(api, payload(card=unknown_valid_card()))
    assert_problem(response, 422, "unknown_card", field="card_number")
    assert snapshot() == before


def test_card_with_bad_check_digit_is_400_invalid_card_number(api, member):
    good = member.card_number
    bad = good[:-1] + str((int(good[-1]) + 1) % 10)
    before = snapshot()
    response = post(api, payload(card=bad))
    body = assert_problem(response, 400, "invalid", field="card_number")
    assert {"field": "card_number", "code": "invalid_card_number"} in [
        {"field": e["field"], "code": e["code"]} for e in body["errors"]
    ]
    assert snapshot() == before


def test_card_of_another_programs_member_is_unknown_card(api, member):
    other, _store, _client = other_program_pos()
    stranger = enrol(other, email="stranger@example.fr")
    before = snapshot()
    response = post(api, payload(card=stranger.card_number))
    assert_problem(response, 422, "unknown_card", field="card_number")
    assert snapshot() == before


def test_suspended_member_is_422_member_not_active(api, member):
    Member.objects.filter(pk=member.pk).update(status=Member.Status.SUSPENDED)
    before = snapshot()
    response = post(api, payload(card=member.card_number))
    assert_problem(response, 422, "member_not_active")
    assert snapshot() == before


def test_currency_other_than_the_programs_is_422_wrong_currency(api, member):
    before = snapshot()
    response = post(api, payload(card=member.card_number, currency="USD"))
    assert_problem(response, 422, "wrong_currency", field="currency")
    assert snapshot() == before


@pytest.mark.parametrize("amount", ["0", "0.00", "-5.00", "10.005"])
def test_zero_negative_or_three_decimal_amount_is_400_on_amount(api, member, amount):
    before = snapshot()
    response = post(api, payload(card=member.card_number, amount=amount))
    body = assert_problem(response, 400, "invalid", field="amount")
    assert any(e["field"] == "amount" for e in body["errors"])
    assert snapshot() == before


def test_lines_not_adding_up_to_the_amount_is_422_lines_mismatch(api, member):
    before = snapshot()
    response = post(api, payload(card=member.card_number, amount="50.00", lines=TWO_LINES))
    assert_problem(response, 422, "lines_mismatch", field="lines")
    assert snapshot() == before


def test_occurred_at_in_the_future_is_422_invalid_occurred_at(api, member):
    before = snapshot()
    future = timezone.now() + timedelta(hours=1)
    response = post(api, payload(card=member.card_number, occurred_at=future))
    assert_problem(response, 422, "invalid_occurred_at", field="occurred_at")
    assert snapshot() == before


def test_occurred_at_older_than_the_backdating_window_is_422(api, program, member):
    assert program.backdating_days == 30
    before = snapshot()
    too_old = timezone.now() - timedelta(days=program.backdating_days + 1)
    response = post(api, payload(card=member.card_number, occurred_at=too_old))
    assert_problem(response, 422, "invalid_occurred_at", field="occurred_at")
    assert snapshot() == before


def test_occurred_at_without_offset_is_400_on_occurred_at(api, member):
    before = snapshot()
    body = payload(card=member.card_number)
    body["occurred_at"] = "2026-01-01T10:00:00"
    response = post(api, body)
    assert_problem(response, 400, "invalid", field="occurred_at")
    assert snapshot() == before


def test_malformed_json_is_400_malformed_json(api, member):
    before = snapshot()
    response = api.post(URL, data=b'{"receipt_id": ', content_type="application/json")
    assert_problem(response, 400, "malformed_json")
    assert snapshot() == before


def test_body_larger_than_the_limit_is_413_body_too_large(api, member, settings):
    settings.POS_API_MAX_BODY_BYTES = 200
    body = payload(card=member.card_number, lines=TWO_LINES)
    before = snapshot()
    response = post(api, body)
    assert_problem(response, 413, "body_too_large")
    assert snapshot() == before


def test_body_over_64_kib_is_413_with_default_limit(api, member):
    body = payload(card=member.card_number, note="x" * (64 * 1024))
    before = snapshot()
    response = post(api, body)
    assert_problem(response, 413, "body_too_large")
    assert snapshot() == before


def test_missing_authorization_is_401_with_www_authenticate(member):
    before = snapshot()
    response = post(APIClient(), payload(card=member.card_number))
    assert_problem(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Api-Key")
    assert snapshot() == before


def test_wrong_api_key_is_401(store, member):
    key = make_api_key(store)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key[:-1]}{'a' if key[-1] != 'a' else 'b'}")
    before = snapshot()
    response = post(client, payload(card=member.card_number))
    assert_problem(response, 401, "authentication_failed")
    assert "WWW-Authenticate" in response
    assert snapshot() == before


def test_revoked_api_key_is_401(store, member):
    api_key, key = create_store_api_key(store=store, name="till 2")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    assert post(client, payload("R-before", card=member.card_number)).status_code == 201
    revoke_store_api_key(api_key=api_key)
    assert StoreAPIKey.objects.get(pk=api_key.pk).revoked
    before = snapshot()
    response = post(client, payload("R-after", card=member.card_number))
    assert_problem(response, 401, "authentication_failed")
    assert snapshot() == before


def test_third_request_in_a_minute_is_429_with_retry_after(api, member, settings, monkeypatch):
    settings.POS_API_RATE_PER_MINUTE = 2
    cache.clear()
    # Freeze the throttle's clock 30 s into a minute, so the three requests share one window.
    monkeypatch.setattr(loyalty.api, "time", SimpleNamespace(time=lambda: 1_800_000_030.0))
    assert post(api, payload("T-1", card=member.card_number)).status_code == 201
    assert post(api, payload("T-2", card=member.card_number)).status_code == 201
    before = snapshot()
    response = post(api, payload("T-3", card=member.card_number))
    assert_problem(response, 429, "throttled")
    assert 1 <= int(response["Retry-After"]) <= 61
    assert snapshot() == before
    cache.clear()


# Purchase successes ---------------------------------------------------------------------------


def test_member_purchase_is_201_with_points_breakdown_and_balances(api, member):
    response = post(api, payload(card=member.card_number, amount="42.50"))
    assert response.status_code == 201, response.content
    body = response.json()
    # Base rate 1 point per EUR, floor: 42.50 EUR -> 42 points.
    assert body["points_earned"] == 42
    assert body["id"]
    assert body["card_number"] == member.card_number
    assert body["points_pending"] == 42
    assert body["points_available"] == 0
    assert body["tier"] == "Bronze"
    assert isinstance(body["breakdown"], list)
    assert body["breakdown"]
    for item in body["breakdown"]:
        assert set(item) == BREAKDOWN_KEYS
    assert [(i["code"], i["points"], i["rule_id"]) for i in body["breakdown"]] == [
        ("base", 42, None)
    ]
    assert Decimal(body["breakdown"][0]["factor"]) == 1
    assert Decimal(body["breakdown"][0]["amount"]) == Decimal("42.50")
    purchase = Purchase.objects.get(receipt_id="R-1")
    assert str(purchase.public_id) == body["id"]
    assert purchase.member_id == member.pk
    member.refresh_from_db()
    assert (member.points_pending, member.points_available) == (42, 0)
    assert find_mismatches() == []


def test_points_are_pending_until_occurred_at_plus_return_window(api, program, member):
    occurred = (timezone.now() - timedelta(hours=2)).replace(microsecond=0)
    response = post(api, payload(card=member.card_number, amount="20.00", occurred_at=occurred))
    assert response.status_code == 201, response.content
    body = response.json()
    expected_release = occurred + timedelta(days=program.return_window_days)
    assert body["points_status"] == "pending"
    assert datetime.fromisoformat(body["release_at"]) == expected_release
    purchase = Purchase.objects.get(receipt_id="R-1")
    assert purchase.release_at == expected_release
    assert purchase.released_at is None
    entry = PointsEntry.objects.get(member=member)
    assert (entry.kind, entry.bucket, entry.points) == ("earn", "pending", 20)
    assert find_mismatches() == []


def test_with_a_zero_day_return_window_points_are_available_at_once():
    _program, _store, client = other_program_pos(slug="instant", return_window_days=0)
    member = enrol(_program, email="instant@example.fr")
    response = post(client, payload(card=member.card_number, amount="20.00"))
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["points_earned"] == 20
    assert body["points_status"] == "available"
    assert body["release_at"] is None
    assert (body["points_available"], body["points_pending"]) == (20, 0)
    entry = PointsEntry.objects.get(member=member)
    assert (entry.bucket, entry.points) == ("available", 20)
    member.refresh_from_db()
    assert (member.points_available, member.points_pending) == (20, 0)
    assert find_mismatches() == []


def test_anonymous_purchase_is_201_with_no_points_and_no_ledger_rows(api, member):
    response = post(api, payload(amount="42.50", lines=TWO_LINES))
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["points_earned"] == 0
    assert body["card_number"] is None
    assert body["points_available"] is None
    assert body["points_pending"] is None
    assert PointsEntry.objects.count() == 0
    purchase = Purchase.objects.get(receipt_id="R-1")
    assert purchase.member is None
    assert purchase.total_amount == Decimal("42.50")
    assert PurchaseLine.objects.filter(purchase=purchase).count() == 2


def test_category_multiplier_doubles_that_line_and_shows_in_breakdown(api, program, member):
    rule = EarningRuleFactory(
        program=program,
        kind="multiplier",
        value=Decimal("2"),
        category="beauty",
        name="Beauty x2",
    )
    response = post(api, payload(card=member.card_number, amount="42.50", lines=TWO_LINES))
    assert response.status_code == 201, response.content
    body = response.json()
    # Base: floor(42.50 x 1) = 42; the beauty line (30.00) is doubled: +30. Total 72.
    assert body["points_earned"] == 72
    items = {(i["code"], i["rule_id"]): i for i in body["breakdown"]}
    assert items[("base", None)]["points"] == 42
    multiplier = items[("multiplier", rule.pk)]
    assert multiplier["points"] == 30
    assert multiplier["name"] == "Beauty x2"
    assert Decimal(multiplier["factor"]) == 2
    assert Decimal(multiplier["amount"]) == Decimal("30.00")
    lines = PurchaseLine.objects.filter(purchase__receipt_id="R-1").order_by("line_no")
    # Beauty: 30 x 2 = 60 exact points; hygiene: 12.50 -> the 72 split 60 / 12.
    assert [line.points_earned for line in lines] == [60, 12]
    assert find_mismatches() == []


def test_replay_with_the_same_payload_is_200_byte_identical(api, member):
    body = payload(card=member.card_number, lines=TWO_LINES)
    first = post(api, body)
    assert first.status_code == 201
    before = snapshot()
    replay = post(api, body)
    assert replay.status_code == 200
    assert replay.content == first.content
    assert snapshot() == before
    assert find_mismatches() == []


def test_same_receipt_with_a_different_amount_is_409_receipt_conflict(api, member):
    assert post(api, payload(card=member.card_number, amount="42.50")).status_code == 201
    before = snapshot()
    response = post(api, payload(card=member.card_number, amount="43.50"))
    assert_problem(response, 409, "receipt_conflict", field="receipt_id")
    assert snapshot() == before
    assert find_mismatches() == []


def test_same_receipt_id_from_another_store_is_another_purchase(api, program, member):
    second = pos_client(StoreFactory(program=program, slug="lyon-01"))
    assert post(api, payload(card=member.card_number, amount="10.00")).status_code == 201
    response = post(second, payload(card=member.card_number, amount="10.00"))
    assert response.status_code == 201, response.content
    assert response.json()["store"] == "lyon-01"
    assert Purchase.objects.filter(receipt_id="R-1").count() == 2
    member.refresh_from_db()
    assert member.points_pending == 20
    assert find_mismatches() == []


def test_member_purchase_with_two_lines_takes_at_most_8_queries(
    api, member, django_assert_max_num_queries
):
    assert post(api, payload("WARM-UP", card=member.card_number, amount="1.00")).status_code == 201
    with django_assert_max_num_queries(8):
        response = post(api, payload(card=member.card_number, lines=TWO_LINES))
    assert response.status_code == 201


def test_anonymous_purchase_takes_at_most_8_queries(api, member, django_assert_max_num_queries):
    assert post(api, payload("WARM-UP", amount="1.00")).status_code == 201
    with django_assert_max_num_queries(8):
        response = post(api, payload(lines=TWO_LINES))
    assert response.status_code == 201


@pytest.mark.skipif(connection.vendor != "postgresql", reason="WITH clauses are PostgreSQL's")
def test_on_postgresql_a_member_purchase_with_lines_is_6_statements(
    api, member, django_assert_num_queries
):
    """Key, BEGIN, member lock, purchase with its lines, ledger rows with the balances, COMMIT."""
    assert post(api, payload("WARM-UP", card=member.card_number, amount="1.00")).status_code == 201
    with django_assert_num_queries(6):
        response = post(api, payload(card=member.card_number, lines=TWO_LINES))
    assert response.status_code == 201
    member.refresh_from_db()
    assert member.points_pending == 1 + response.json()["points_earned"]
    purchase = Purchase.objects.get(receipt_id="R-1")
    assert list(purchase.lines.order_by("line_no").values_list("sku", flat=True)) == [
        "CREME-50",
        "SAVON-3",
    ]
    assert PointsEntry.objects.filter(purchase=purchase).count() == 1
    assert find_mismatches() == []


# Quote ----------------------------------------------------------------------------------------


def test_quote_returns_points_and_breakdown_and_writes_nothing(api, program, member):
    rule = EarningRuleFactory(
        program=program, kind="multiplier", value=Decimal("2"), category="beauty"
    )
    before = snapshot()
    body = payload(card=member.card_number, amount="42.50", lines=TWO_LINES)
    del body["receipt_id"]
    response = post(api, body, url=QUOTE_URL)
    assert response.status_code == 200, response.content
    quote = response.json()
    assert quote["points"] == 72
    assert quote["card_number"] == member.card_number
    assert quote["tier"] == "Bronze"
    assert {(i["code"], i["rule_id"], i["points"]) for i in quote["breakdown"]} == {
        ("base", None, 42),
        ("multiplier", rule.pk, 30),
    }
    for item in quote["breakdown"]:
        assert set(item) == BREAKDOWN_KEYS
    assert snapshot() == before


def test_quote_in_the_wrong_currency_is_422(api, member):
    before = snapshot()
    response = post(
        api,
        {"amount": "10.00", "currency": "USD", "card_number": member.card_number},
        url=QUOTE_URL,
    )
    assert_problem(response, 422, "wrong_currency", field="currency")
    assert snapshot() == before


def test_receipt_id_with_a_slash_is_refused_because_returns_could_not_address_it(api, member):
    body = {
        "receipt_id": "SHOP/1",
        "card_number": member.card_number,
        "amount": "10.00",
        "currency": "EUR",
        "occurred_at": timezone.now().isoformat(),
    }
    response = api.post("/api/v1/purchases/", body, format="json")
    assert response.status_code == 400
    assert response.json()["field"] == "receipt_id"
    assert not Purchase.objects.exists()
