"""Real threads racing on one PostgreSQL database: no point lost, none doubled."""

from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from members.ledger import find_mismatches
from members.models import Member, PointsEntry, Purchase, PurchaseReturn
from tests.concurrency import race

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.concurrency,
    pytest.mark.django_db(transaction=True),
]


def client_for(key):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


@pytest.fixture
def api_key(store):
    from tests.factories import make_api_key

    return make_api_key(store)


def purchase_body(member, receipt_id, amount="20.00"):
    return {
        "receipt_id": receipt_id,
        "card_number": member.card_number,
        "amount": amount,
        "currency": "EUR",
        "occurred_at": timezone.now().isoformat(),
    }


def test_fifty_threads_posting_the_same_receipt_credit_once(api_key, member):
    body = purchase_body(member, "SAME-1", "37.00")
    responses = race(
        50, lambda i: client_for(api_key).post("/api/v1/purchases/", body, format="json")
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) == 1
    assert statuses.count(200) == 49
    assert len({r.content for r in responses}) == 1  # every answer is the first answer
    assert Purchase.objects.filter(receipt_id="SAME-1").count() == 1
    assert PointsEntry.objects.filter(member=member).count() == 1
    member.refresh_from_db()
    assert member.points_pending == 37
    assert find_mismatches() == []


def test_twenty_threads_posting_different_receipts_for_one_member_are_all_credited(api_key, member):
    responses = race(
        20,
        lambda i: client_for(api_key).post(
            "/api/v1/purchases/", purchase_body(member, f"DIFF-{i}", f"{10 + i}.00"), format="json"
        ),
    )
    assert [r.status_code for r in responses] == [201] * 20
    member.refresh_from_db()
    assert member.points_pending == sum(10 + i for i in range(20))  # 390
    assert Purchase.objects.filter(member=member).count() == 20
    assert find_mismatches() == []


def test_returns_racing_purchases_keep_the_ledger_exact(api_key, member):
    client = client_for(api_key)
    first = client.post(
        "/api/v1/purchases/", purchase_body(member, "BASE-1", "100.00"), format="json"
    )
    assert first.status_code == 201

    def work(i):
        c = client_for(api_key)
        if i % 2 == 0:
            return c.post(
                "/api/v1/purchases/", purchase_body(member, f"NEW-{i}", "10.00"), format="json"
            )
        return c.post(
            "/api/v1/purchases/BASE-1/returns/",
            {"return_id": f"RET-{i}", "amount": "10.00"},
            format="json",
        )

    responses = race(20, work)
    assert [r.status_code for r in responses] == [201] * 20
    base = Purchase.objects.get(receipt_id="BASE-1")
    assert base.returned_amount == Decimal("100.00")
    assert base.points_reversed == 100  # ten returns of 10 reverse exactly what was earned
    assert PurchaseReturn.objects.filter(purchase=base).count() == 10
    member.refresh_from_db()
    assert member.points_pending == 10 * 10  # only the ten new purchases remain
    assert find_mismatches() == []


def test_concurrent_returns_never_exceed_the_purchase(api_key, member):
    client = client_for(api_key)
    client.post("/api/v1/purchases/", purchase_body(member, "OVER-1", "50.00"), format="json")
    responses = race(
        10,
        lambda i: client_for(api_key).post(
            "/api/v1/purchases/OVER-1/returns/",
            {"return_id": f"R{i}", "amount": "20.00"},
            format="json",
        ),
    )
    codes = sorted(r.status_code for r in responses)
    assert codes.count(201) == 2  # 2 x 20 fit in 50; a third would exceed it
    assert codes.count(422) == 8
    purchase = Purchase.objects.get(receipt_id="OVER-1")
    assert purchase.returned_amount == Decimal("40.00")
    assert find_mismatches() == []


def test_concurrent_enrolments_with_one_email_create_one_member(api_key, program):
    responses = race(
        20,
        lambda i: client_for(api_key).post(
            "/api/v1/members/", {"email": "race@example.fr"}, format="json"
        ),
    )
    codes = sorted(r.status_code for r in responses)
    assert codes.count(201) == 1
    assert codes.count(200) == 19
    assert Member.objects.filter(program=program, email="race@example.fr").count() == 1
    assert len({r.json()["card_number"] for r in responses}) == 1


def test_concurrent_requests_with_one_idempotency_key_run_once(api_key, program):
    responses = race(
        10,
        lambda i: client_for(api_key).post(
            "/api/v1/members/",
            {"first_name": "Same"},
            format="json",
            HTTP_IDEMPOTENCY_KEY="race-key-1",
        ),
    )
    codes = sorted(r.status_code for r in responses)
    # One runs; the others either replay its answer or are told it is still in progress.
    assert codes.count(201) >= 1
    assert set(codes) <= {201, 409}
    assert Member.objects.filter(program=program, first_name="Same").count() == 1
    created = {r.content for r in responses if r.status_code == 201}
    assert len(created) == 1
