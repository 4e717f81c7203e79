"""Fixtures of the portal tests: a program with two tiers, a store, members with verified
online accounts, and clients signed in as them."""

import re
from decimal import Decimal

import pytest
from django.core import mail
from django.core.cache import cache
from django.test import Client

from members import services as member_services
from portal.models import MemberAccount
from tests import factories
from tests.factories import ProgramFactory, StoreFactory, TierFactory, enrol

PASSWORD = "Velo-rouge-2026!"


@pytest.fixture(autouse=True)
def _clean_throttles():
    """The throttle counters live in the cache, which outlives a test."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def program(db):
    return ProgramFactory(slug="boutique", name="Boutique", time_zone="Europe/Paris")


@pytest.fixture
def tiers(program):
    return (
        TierFactory(program=program, name="Bronze", rank=0),
        TierFactory(
            program=program,
            name="Gold",
            rank=1,
            qualify_threshold=Decimal("500"),
            retain_threshold=Decimal("400"),
        ),
    )


@pytest.fixture
def store(program):
    return StoreFactory(program=program, name="Paris Rivoli")


@pytest.fixture
def make_account(program, tiers):
    """make_account(points=0, verified=True, **enrol_kwargs): a member with an online account
    and `points` available points (through the ledger)."""
    counter = iter(range(1, 1_000_000))

    def make(points=0, *, verified=True, password=PASSWORD, program=program, **kwargs):
        from django.contrib.auth import get_user_model
        from django.utils import timezone

        n = next(counter)
        kwargs.setdefault("email", f"member{n}@example.fr")
        kwargs.setdefault("first_name", f"Claire{n}")
        member = enrol(program, **kwargs)
        if points:
            member_services.adjust_points(
                member=member, points=points, reason="test points", staff_user=None
            )
        user = get_user_model().objects.create_user(
            username=f"member-{member.pk}", email=member.email, password=password
        )
        MemberAccount.objects.create(
            member=member, user=user, email_verified_at=timezone.now() if verified else None
        )
        member.refresh_from_db()
        return member

    return make


@pytest.fixture
def member(make_account):
    return make_account(1000)


def signed_in(member) -> Client:
    client = Client()
    client.force_login(member.account.user)
    return client


@pytest.fixture
def client_a(member):
    return signed_in(member)


@pytest.fixture
def make_reward(program):
    def make(**fields):
        fields.setdefault("name_en", "Gift")
        return factories.make_reward(fields.pop("program", program), **fields)

    return make


def url(name, program="boutique", **kwargs):
    from django.urls import reverse

    return reverse(f"portal:{name}", kwargs={"program": program, **kwargs})


def link_in_last_email(pattern=r"https?://\S+/portal/\S+") -> str:
    body = mail.outbox[-1].body
    found = re.search(pattern, body)
    assert found, body
    return found.group(0)
