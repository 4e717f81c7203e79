"""The hot path's INSERT (loyalty.sql.insert) prepares every value exactly as Django's
`get_db_prep_save` would, on SQLite and on PostgreSQL (where most values take a short way)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone
from psycopg.types.json import Jsonb

from loyalty.sql import insert_params
from members.models import Member, PointsEntry, Purchase, PurchaseLine, PurchaseReturn
from tests.members.helpers import pos_client

pytestmark = pytest.mark.django_db


def comparable(value):
    """A parameter as the database driver sees it: its type and its text."""
    if isinstance(value, Jsonb):
        return ("Jsonb", value.obj)
    if isinstance(value, Decimal):
        return ("Decimal", str(value))
    return (type(value).__name__, value)


def django_params(obj) -> list:
    """What Django's own INSERT would send for `obj` (after pre_save set its timestamps)."""
    return [
        f.get_db_prep_save(getattr(obj, f.attname), connection)
        for f in type(obj)._meta.concrete_fields
        if not f.primary_key
    ]


def assert_prepared_as_django_does(objs):
    fast = insert_params(objs)
    slow = [p for obj in objs for p in django_params(obj)]
    assert [comparable(p) for p in fast] == [comparable(p) for p in slow]


def test_rows_of_a_member_purchase_with_lines_and_a_return_are_prepared_as_django_does(
    store, member
):
    api = pos_client(store)
    occurred = (timezone.now() - timedelta(hours=2)).isoformat()
    body = {
        "receipt_id": "R-1",
        "card_number": member.card_number,
        "amount": "42.50",
        "currency": "EUR",
        "occurred_at": occurred,
        "lines": [
            {"sku": "CREME-50", "category": "beauty", "quantity": "1", "unit_price": "30.00"},
            {"sku": "SAVON-3", "category": "hygiene", "quantity": "2", "unit_price": "6.25"},
        ],
    }
    assert api.post("/api/v1/purchases/", body, format="json").status_code == 201
    returned = api.post(
        "/api/v1/purchases/R-1/returns/",
        {"return_id": "RET-1", "amount": "12.50"},
        format="json",
    )
    assert returned.status_code == 201, returned.content
    anonymous = {**body, "receipt_id": "R-2", "card_number": None, "lines": []}
    assert api.post("/api/v1/purchases/", anonymous, format="json").status_code == 201

    purchases = list(Purchase.objects.order_by("pk"))
    assert {p.member_id is None for p in purchases} == {True, False}
    for model in (Purchase, PurchaseLine, PurchaseReturn, PointsEntry, Member):
        rows = list(model.objects.order_by("pk"))
        assert rows, model
        assert_prepared_as_django_does(rows)
        for row in rows:
            assert_prepared_as_django_does([row])


def test_new_instances_with_naive_odd_and_missing_values_are_prepared_as_django_does(store, member):
    purchase = Purchase(
        program=store.program,
        store=store,
        member=member,
        receipt_id="R-9",
        total_amount=Decimal("10"),
        currency="EUR",
        occurred_at=timezone.now(),
        points_earned=True,  # a bool where an integer is expected
        breakdown=[{"code": "base", "points": 10}],
        release_at=None,
        released_at=timezone.now().replace(tzinfo=None) + timedelta(hours=1),
        request_hash="0" * 64,
        response="{}",
    )
    line = PurchaseLine(
        purchase_id=12,
        line_no=1,
        sku=7,  # an integer where text is expected
        category="",
        quantity=Decimal("1.5"),
        unit_price="2.50",  # text where a decimal is expected
        line_amount=Decimal("3.75"),
        points_earned=3,
    )
    with pytest.warns(RuntimeWarning, match="naive datetime"):
        assert_prepared_as_django_does([purchase])
    assert_prepared_as_django_does([line])


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the short way is PostgreSQL's")
def test_on_postgresql_integers_keep_the_type_django_gives_them(store, member):
    from psycopg.types.numeric import Int2, Int4

    line = PurchaseLine(
        purchase_id=12,
        line_no=1,
        sku="A",
        category="b",
        quantity=Decimal("1.000"),
        unit_price=Decimal("2.50"),
        line_amount=Decimal("2.50"),
        points_earned=2,
    )
    params = dict(
        zip(
            [f.name for f in PurchaseLine._meta.concrete_fields if not f.primary_key],
            insert_params([line]),
            strict=True,
        )
    )
    assert type(params["line_no"]) is Int2
    assert type(params["points_earned"]) is Int4
    assert type(params["purchase"]) is int  # a foreign key to a BigAutoField: a plain int
