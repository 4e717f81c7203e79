"""The ledger's invariants: append-only, balances equal to sums, check_ledger catches drift."""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, transaction
from django.utils import timezone

from members import services
from members.ledger import find_mismatches
from members.models import Member, PointsEntry
from tests.factories import StaffUserFactory

pytestmark = pytest.mark.django_db


def buy(store, member, receipt, amount):
    return services.record_purchase(
        store=store,
        receipt_id=receipt,
        amount=amount,
        currency="EUR",
        occurred_at=timezone.now(),
        card_number=member.card_number,
    )


def test_check_ledger_passes_on_a_consistent_ledger(store, member, capsys):
    from decimal import Decimal

    buy(store, member, "L1", Decimal("12.00"))
    call_command("check_ledger")
    assert "consistent" in capsys.readouterr().out


def test_check_ledger_fails_when_a_cached_balance_drifts(store, member):
    from decimal import Decimal

    buy(store, member, "L2", Decimal("12.00"))
    Member.objects.filter(pk=member.pk).update(points_pending=999)
    assert find_mismatches()
    with pytest.raises(CommandError, match="invariant"):
        call_command("check_ledger")


@pytest.mark.postgres
@pytest.mark.parametrize("operation", ["update", "delete"])
def test_database_refuses_to_change_ledger_rows(store, member, operation):
    from decimal import Decimal

    buy(store, member, "L3", Decimal("12.00"))
    entries = PointsEntry.objects.filter(member=member)
    change = (lambda: entries.update(points=1000)) if operation == "update" else entries.delete
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        change()
    assert PointsEntry.objects.get(member=member).points == 12


def test_staff_adjustment_needs_a_reason_and_records_the_user(member):
    staff = StaffUserFactory()
    with pytest.raises(services.errors.InvalidAdjustment):
        services.adjust_points(member=member, points=50, reason=" ", staff_user=staff)
    with pytest.raises(services.errors.InvalidAdjustment):
        services.adjust_points(member=member, points=0, reason="gift", staff_user=staff)
    assert not PointsEntry.objects.filter(member=member).exists()
    services.adjust_points(member=member, points=50, reason="Goodwill", staff_user=staff)
    entry = PointsEntry.objects.get(member=member)
    assert (entry.kind, entry.bucket, entry.points, entry.staff_user, entry.reason) == (
        "adjust",
        "available",
        50,
        staff,
        "Goodwill",
    )
    member.refresh_from_db()
    assert member.points_available == 50
    assert find_mismatches() == []
