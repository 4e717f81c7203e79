"""POST /api/v1/purchases/{receipt_id}/returns/: points reversed pro rata or by line, never
more than earned; errors write nothing; replays answered byte for byte."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from members import services
from members.ledger import find_mismatches
from members.models import PointsEntry, Purchase, PurchaseLine, PurchaseReturn
from tests.factories import (
    EarningRuleFactory,
    ProgramFactory,
    StaffUserFactory,
    StoreFactory,
    TierFactory,
    enrol,
)
from tests.members.helpers import assert_problem, pos_client, snapshot

pytestmark = pytest.mark.django_db

# Line A: 1 x 30.00 of beauty (x2 multiplier), line B: 2 x 6.25 of hygiene = 42.50 in all.
TWO_LINES = [
    {"sku": "A", "category": "beauty", "quantity": "1", "unit_price": "30.00"},
    {"sku": "B", "category": "hygiene", "quantity": "2", "unit_price": "6.25"},
]


# Helpers --------------------------------------------------------------------------------------


def purchase(client, receipt, amount, card=None, lines=None):
    body = {
        "receipt_id": receipt,
        "amount": amount,
        "currency": "EUR",
        "occurred_at": (timezone.now() - timedelta(hours=2)).isoformat(),
    }
    if card:
        body["card_number"] = card
    if lines:
        body["lines"] = lines
    response = client.post("/api/v1/purchases/", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def give_back(client, receipt, return_id, amount, lines=None, **extra):
    body = {"return_id": return_id, "amount": amount, **extra}
    if lines is not None:
        body["lines"] = lines
    return client.post(f"/api/v1/purchases/{receipt}/returns/", body, format="json")


def balances(member):
    member.refresh_from_db()
    return member.points_available, member.points_pending


@pytest.fixture
def line_purchase(api, program, member):
    """The two-line basket with beauty doubled: A earns 60 and B earns 12 (72 in all)."""
    EarningRuleFactory(program=program, kind="multiplier", value=Decimal("2"), category="beauty")
    body = purchase(api, "P-LINES", "42.50", card=member.card_number, lines=TWO_LINES)
    # Base floor(42.50) = 42, beauty bonus 30.00 x (2 - 1) = 30: 72 points.
    assert body["points_earned"] == 72
    return body


# Pro rata and by line -------------------------------------------------------------------------


def test_partial_returns_reverse_pro_rata_and_add_up_to_exactly_what_was_earned(api, member):
    assert purchase(api, "P-100", "100.00", card=member.card_number)["points_earned"] == 100

    first = give_back(api, "P-100", "RET-1", "25.00")
    assert first.status_code == 201, first.content
    body = first.json()
    # 25.00 of 100.00 back: 25 of the 100 pending points.
    assert body["points_reversed"] == 25
    assert body["points_pending"] == 75
    assert body["purchase_returned_amount"] == "25.00"
    assert balances(member) == (0, 75)

    second = give_back(api, "P-100", "RET-2", "30.00")
    assert second.status_code == 201, second.content
    assert second.json()["points_reversed"] == 30
    third = give_back(api, "P-100", "RET-3", "45.00")
    assert third.status_code == 201, third.content
    assert third.json()["points_reversed"] == 45
    assert third.json()["points_pending"] == 0

    record = Purchase.objects.get(receipt_id="P-100")
    assert record.returned_amount == Decimal("100.00")
    assert record.points_reversed == 100
    assert balances(member) == (0, 0)
    reversals = PointsEntry.objects.filter(member=member, kind="return")
    assert sorted(e.points for e in reversals) == [-45, -30, -25]
    assert {e.bucket for e in reversals} == {"pending"}
    assert find_mismatches() == []


def test_line_return_reverses_only_that_lines_share(api, member, line_purchase):
    response = give_back(api, "P-LINES", "RET-B", "6.25", lines=[{"sku": "B", "quantity": "1"}])
    assert response.status_code == 201, response.content
    # Line B earned 12 for 2 units; one unit back takes 6.
    assert response.json()["points_reversed"] == 6
    assert balances(member) == (0, 66)
    line_b = PurchaseLine.objects.get(purchase__receipt_id="P-LINES", sku="B")
    assert line_b.returned_quantity == 1
    assert PurchaseLine.objects.get(purchase__receipt_id="P-LINES", sku="A").returned_quantity == 0
    assert find_mismatches() == []


def test_return_exceeding_the_purchase_is_422_and_writes_nothing(api, member):
    purchase(api, "P-50", "50.00", card=member.card_number)
    assert give_back(api, "P-50", "RET-1", "30.00").status_code == 201
    before = snapshot()
    response = give_back(api, "P-50", "RET-2", "20.01")
    assert_problem(response, 422, "return_exceeds_purchase", field="amount")
    assert snapshot() == before
    assert find_mismatches() == []


@pytest.mark.parametrize("amount", ["10.00", "42.50"], ids=["partial", "whole-purchase"])
def test_return_lines_worth_other_than_the_amount_is_422_lines_mismatch(
    api, member, line_purchase, amount
):
    before = snapshot()
    response = give_back(api, "P-LINES", "RET-X", amount, lines=[{"sku": "B", "quantity": "1"}])
    assert_problem(response, 422, "lines_mismatch", field="lines")
    assert snapshot() == before
    assert find_mismatches() == []


def test_returning_more_of_a_line_than_was_bought_is_422(api, member, line_purchase):
    before = snapshot()
    response = give_back(api, "P-LINES", "RET-X", "18.75", lines=[{"sku": "B", "quantity": "3"}])
    assert_problem(response, 422, "return_exceeds_purchase", field="lines")
    assert snapshot() == before


def test_return_of_an_unknown_receipt_is_404_unknown_receipt(api, member):
    before = snapshot()
    response = give_back(api, "NO-SUCH-RECEIPT", "RET-1", "5.00")
    assert_problem(response, 404, "unknown_receipt", field="receipt_id")
    assert snapshot() == before


# Who may post a return ------------------------------------------------------------------------


def test_another_store_of_the_program_may_post_the_return(api, program, store, member):
    purchase(api, "P-40", "40.00", card=member.card_number)
    other_store = StoreFactory(program=program, slug="lyon-01")
    response = give_back(
        pos_client(other_store), "P-40", "RET-LYON", "10.00", purchase_store=store.slug
    )
    assert response.status_code == 201, response.content
    body = response.json()
    # 10.00 of 40.00 back: 10 of the 40 points.
    assert body["points_reversed"] == 10
    assert body["store"] == "lyon-01"
    assert PurchaseReturn.objects.get(return_id="RET-LYON").store_id == other_store.pk
    assert balances(member) == (0, 30)
    assert find_mismatches() == []


def test_a_store_of_another_program_cannot_return_the_purchase(api, store, member):
    purchase(api, "P-40", "40.00", card=member.card_number)
    other_program = ProgramFactory(slug="other")
    TierFactory(program=other_program, rank=0)
    stranger = pos_client(StoreFactory(program=other_program, slug=store.slug))
    before = snapshot()
    response = give_back(stranger, "P-40", "RET-X", "10.00")
    assert_problem(response, 404, "unknown_receipt")
    response = give_back(stranger, "P-40", "RET-X", "10.00", purchase_store=store.slug)
    assert_problem(response, 404, "unknown_receipt")
    assert snapshot() == before


# Replays --------------------------------------------------------------------------------------


def test_replaying_a_return_is_200_byte_identical(api, member):
    purchase(api, "P-40", "40.00", card=member.card_number)
    occurred_at = (timezone.now() - timedelta(minutes=5)).isoformat()
    first = give_back(api, "P-40", "RET-1", "10.00", occurred_at=occurred_at)
    assert first.status_code == 201
    before = snapshot()
    replay = give_back(api, "P-40", "RET-1", "10.00", occurred_at=occurred_at)
    assert replay.status_code == 200, replay.content
    assert replay.content == first.content
    assert snapshot() == before
    assert find_mismatches() == []


def test_replaying_a_return_sent_without_occurred_at_is_200_byte_identical(api, member):
    """occurred_at is optional; a till that retries the very same request must get the first
    answer, not a conflict with itself."""
    purchase(api, "P-40", "40.00", card=member.card_number)
    first = give_back(api, "P-40", "RET-1", "10.00")
    assert first.status_code == 201
    before = snapshot()
    replay = give_back(api, "P-40", "RET-1", "10.00")
    assert replay.status_code == 200, replay.content
    assert replay.content == first.content
    assert snapshot() == before


def test_same_return_id_with_another_amount_is_409_return_conflict(api, member):
    purchase(api, "P-40", "40.00", card=member.card_number)
    occurred_at = (timezone.now() - timedelta(minutes=5)).isoformat()
    assert give_back(api, "P-40", "RET-1", "10.00", occurred_at=occurred_at).status_code == 201
    before = snapshot()
    response = give_back(api, "P-40", "RET-1", "12.00", occurred_at=occurred_at)
    assert_problem(response, 409, "return_conflict", field="return_id")
    assert snapshot() == before


# After release, anonymous ---------------------------------------------------------------------


def test_return_after_the_points_were_spent_takes_available_below_zero():
    program = ProgramFactory(slug="instant", return_window_days=0)
    TierFactory(program=program, name="Entry", rank=0)
    client = pos_client(StoreFactory(program=program, slug="instant-01"))
    member = enrol(program, email="spender@example.fr")
    body = purchase(client, "P-100", "100.00", card=member.card_number)
    assert (body["points_status"], body["points_available"]) == ("available", 100)
    services.adjust_points(member=member, points=-80, reason="test", staff_user=StaffUserFactory())
    assert balances(member) == (20, 0)

    response = give_back(client, "P-100", "RET-ALL", "100.00")
    assert response.status_code == 201, response.content
    body = response.json()
    # All 100 points come back out of the available bucket: 20 - 100 = -80.
    assert body["points_reversed"] == 100
    assert body["points_available"] == -80
    assert body["points_pending"] == 0
    assert balances(member) == (-80, 0)
    entry = PointsEntry.objects.get(member=member, kind="return")
    assert (entry.bucket, entry.points) == ("available", -100)
    assert find_mismatches() == []


def test_return_of_an_anonymous_purchase_reverses_no_points(api, member):
    purchase(api, "P-ANON", "25.00")
    response = give_back(api, "P-ANON", "RET-1", "25.00")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["points_reversed"] == 0
    assert body["card_number"] is None
    assert PointsEntry.objects.count() == 0
    assert Purchase.objects.get(receipt_id="P-ANON").returned_amount == Decimal("25.00")
