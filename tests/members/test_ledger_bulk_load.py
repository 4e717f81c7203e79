"""The ledger's bulk-load functions (for generated histories): loaded rows move no balance
until `settle_loaded_entries`, which moves the cached balances by exactly those rows."""

import uuid
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.utils import timezone

from members import ledger
from members.ledger import find_mismatches
from members.models import Member, PointsEntry
from tests.factories import record_member_purchase

pytestmark = pytest.mark.django_db


def loaded_row(entry_id, member, *, kind, bucket, points, at, reason=""):
    field = PointsEntry._meta.get_field
    values = {
        "id": entry_id,
        "txn": field("txn").get_db_prep_value(uuid.uuid4(), connection),
        "program_id": member.program_id,
        "member_id": member.pk,
        "kind": kind,
        "bucket": bucket,
        "points": points,
        "created_at": field("created_at").get_db_prep_value(at, connection),
        "effective_at": field("effective_at").get_db_prep_value(at, connection),
        "purchase_id": None,
        "purchase_return_id": None,
        "store_id": None,
        "staff_user_id": None,
        "reason": reason,
    }
    return tuple(values[column] for column in ledger.LOAD_COLUMNS)


def test_loaded_rows_move_the_balances_once_settled_and_only_those_rows(store, member):
    now = timezone.now()
    record_member_purchase(store, member, "B-1", Decimal("12.00"), now)
    member.refresh_from_db()
    before = (member.points_available, member.points_pending, member.points_lifetime)
    first_id = PointsEntry.objects.order_by("-pk").values_list("pk", flat=True).first() + 1
    rows = [
        loaded_row(first_id, member, kind="earn", bucket="available", points=30, at=now),
        loaded_row(first_id + 1, member, kind="earn", bucket="pending", points=5, at=now),
        loaded_row(
            first_id + 2, member, kind="adjust", bucket="available", points=-4, at=now, reason="t"
        ),
    ]
    with transaction.atomic():
        ledger.insert_entries(rows)
        assert find_mismatches()  # loaded, not settled: the cache lags the rows
        ledger.settle_loaded_entries(member.program_id, entry_id_from=first_id)

    member = Member.objects.get(pk=member.pk)
    assert (member.points_available, member.points_pending, member.points_lifetime) == (
        before[0] + 30 - 4,
        before[1] + 5,
        before[2] + 35,
    )
    assert find_mismatches() == []
