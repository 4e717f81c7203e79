"""A member whose row was saved through the ORM (an admin edit) earns at the till like any
other: the POS hot path reads the member with precompiled SQL, on SQLite as on PostgreSQL."""

from datetime import timedelta

import pytest
from django.utils import timezone

from members.models import Member

pytestmark = pytest.mark.django_db


def buy(api, member, receipt_id):
    return api.post(
        "/api/v1/purchases/",
        {
            "receipt_id": receipt_id,
            "card_number": member.card_number,
            "amount": "42.50",
            "currency": "EUR",
            "occurred_at": (timezone.now() - timedelta(hours=1)).isoformat(),
        },
        format="json",
    )


def test_purchase_for_a_member_saved_through_the_orm(api, member):
    first = buy(api, member, "R-ORM-1")
    assert first.status_code == 201, first.content
    member = Member.objects.get(pk=member.pk)
    assert member.last_activity_at is not None
    member.first_name = "Claire-Marie"
    member.save()  # every column written by the ORM, datetimes included

    response = buy(api, member, "R-ORM-2")

    assert response.status_code == 201, response.content
    member.refresh_from_db()
    assert member.points_pending == 2 * response.json()["points_earned"] > 0
    assert member.first_name == "Claire-Marie"
