"""Assertions shared by the POS API tests."""

from rest_framework.test import APIClient

from loyalty.models import IdempotencyRecord
from members.models import Member, PointsEntry, Purchase, PurchaseLine, PurchaseReturn
from tests.factories import make_api_key


def snapshot():
    """Everything a refused request must leave untouched: row counts, balances, returned
    amounts of purchases and returned quantities of lines."""
    counts = {
        model.__name__: model.objects.count()
        for model in (
            Member,
            Purchase,
            PurchaseLine,
            PurchaseReturn,
            PointsEntry,
            IdempotencyRecord,
        )
    }
    counts["balances"] = list(
        Member.objects.order_by("pk").values_list(
            "pk", "points_available", "points_pending", "points_lifetime"
        )
    )
    counts["purchases"] = list(
        Purchase.objects.order_by("pk").values_list("pk", "returned_amount", "points_reversed")
    )
    counts["lines"] = list(
        PurchaseLine.objects.order_by("pk").values_list("pk", "returned_quantity")
    )
    return counts


def assert_problem(response, status, code, field=None):
    """The response is a problem-details error with this status, code and field."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"] == f"urn:loyalty:problem:{code}"
    assert body["code"] == code
    assert body["status"] == status
    if field is not None:
        assert body["field"] == field
    return body


def pos_client(store):
    """An API client authenticated with a new key of `store`."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {make_api_key(store)}")
    return client
