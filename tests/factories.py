"""factory_boy factories for every model the tests build."""

from decimal import Decimal

import factory
from django.contrib.auth import get_user_model

from loyalty.models import EarningRule, Program, ProgramCost, Store, Tier


class ProgramFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Program

    name = factory.Sequence(lambda n: f"Program {n}")
    slug = factory.Sequence(lambda n: f"program-{n}")
    currency = "EUR"
    time_zone = "Europe/Paris"
    base_earn_rate = Decimal("1")
    return_window_days = 30


class StoreFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Store

    program = factory.SubFactory(ProgramFactory)
    name = factory.Sequence(lambda n: f"Store {n}")
    slug = factory.Sequence(lambda n: f"store-{n}")
    channel = Store.Channel.SHOP


class TierFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tier

    program = factory.SubFactory(ProgramFactory)
    name = factory.Sequence(lambda n: f"Tier {n}")
    rank = factory.Sequence(lambda n: n)
    qualify_threshold = Decimal("0")
    earn_multiplier = Decimal("1")


class EarningRuleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = EarningRule

    program = factory.SubFactory(ProgramFactory)
    name = factory.Sequence(lambda n: f"Rule {n}")
    kind = EarningRule.Kind.MULTIPLIER
    value = Decimal("2")


class ProgramCostFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ProgramCost

    program = factory.SubFactory(ProgramFactory)
    category = ProgramCost.Category.TECHNOLOGY
    label = "Hosting"
    kind = ProgramCost.Kind.RECURRING
    cost_amount = Decimal("450.00")
    starts_on = factory.Faker("date_object")


class StaffUserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ["username"]

    username = factory.Sequence(lambda n: f"staff{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    is_staff = True
    is_superuser = True
    password = factory.django.Password("correct horse battery staple")


def make_api_key(store) -> str:
    """A real POS API key for `store`, created through the service."""
    from loyalty.services import create_store_api_key

    return create_store_api_key(store=store, name="test")[1]


def enrol(program, **kwargs):
    """A member enrolled through the enrolment service."""
    from members.services import enrol_member

    kwargs.setdefault("channel", "shop")
    return enrol_member(program=program, **kwargs)[0]


def make_reward(program, *, tiers=(), **fields):
    """A reward of `program` (a 100-point gift costing 5.00 unless told otherwise); `tiers`
    restricts it to those tiers."""
    from rewards.models import Reward

    fields.setdefault("name_fr", "Cadeau")
    fields.setdefault("kind", Reward.Kind.GIFT)
    fields.setdefault("points_cost", 100)
    fields.setdefault("cost_amount", Decimal("5.00"))
    reward = Reward.objects.create(program=program, **fields)
    if tiers:
        reward.tiers.set(tiers)
    return reward


def record_member_purchase(store, member, receipt, amount, occurred_at):
    """A purchase of `member` (None: an anonymous customer) at `store` (amount in euros),
    recorded through the service; the service's outcome."""
    from members.services import record_purchase

    return record_purchase(
        store=store,
        receipt_id=receipt,
        amount=Decimal(amount),
        currency="EUR",
        occurred_at=occurred_at,
        card_number=member.card_number if member else None,
    )
