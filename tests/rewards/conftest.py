"""Small, generic fixtures for the rewards tests: a program with two tiers, a store, a staff
user, a member with points, and factory functions for members and rewards."""

from decimal import Decimal

import pytest

from members import services as member_services
from members.models import Member, PointsEntry
from rewards.models import Redemption, Reward
from tests import factories
from tests.factories import ProgramFactory, StaffUserFactory, StoreFactory, TierFactory, enrol


@pytest.fixture
def program(db):
    return ProgramFactory(time_zone="Europe/Paris")


@pytest.fixture
def tiers(program):
    """The program's tiers, lowest first: new members start in the first."""
    return (
        TierFactory(program=program, name="Bronze", rank=0),
        TierFactory(program=program, name="Gold", rank=1, qualify_threshold=Decimal("500")),
    )


@pytest.fixture
def store(program):
    return StoreFactory(program=program)


@pytest.fixture
def staff(db):
    return StaffUserFactory()


@pytest.fixture
def make_member(program, tiers):
    """make_member(points=1000, **enrol_kwargs): a member enrolled through the service, given
    `points` available points through the ledger (adjust_points)."""
    counter = iter(range(1, 1_000_000))

    def make(points=1000, *, program=program, **kwargs):
        kwargs.setdefault("email", f"member{next(counter)}@example.fr")
        member = enrol(program, **kwargs)
        if points:
            member_services.adjust_points(
                member=member, points=points, reason="test points", staff_user=None
            )
        member.refresh_from_db()
        return member

    return make


@pytest.fixture
def member(make_member):
    """An active member of the lowest tier with 1000 available points."""
    return make_member(1000, first_name="Claire")


@pytest.fixture
def make_reward(program):
    """make_reward(**fields): a reward of the program (tests/factories.make_reward)."""

    def make(**fields):
        return factories.make_reward(fields.pop("program", program), **fields)

    return make


@pytest.fixture
def snapshot(db):
    """snapshot(): what a refused action must leave untouched (redemptions, ledger rows,
    balances, stocks); compare two calls."""

    def take():
        return {
            "redemptions": list(
                Redemption.objects.order_by("pk").values_list(
                    "pk", "status", "used_at", "used_receipt_id", "closed_at", "refund_txn"
                )
            ),
            "entries": PointsEntry.objects.count(),
            "balances": list(
                Member.objects.order_by("pk").values_list(
                    "pk", "points_available", "points_pending", "points_lifetime"
                )
            ),
            "stocks": list(Reward.objects.order_by("pk").values_list("pk", "stock")),
        }

    return take
