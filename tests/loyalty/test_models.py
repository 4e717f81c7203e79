"""The program core's database constraints refuse bad rows; clean() explains the refusals; an
earning-rule change moves its program's updated_at, which versions the cached earning grid."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone, translation

from loyalty import selectors
from loyalty.models import EarningRule, Program, ProgramCost, validate_time_zone
from tests.factories import (
    EarningRuleFactory,
    ProgramCostFactory,
    ProgramFactory,
    StoreFactory,
    TierFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def english():
    """The messages below are asserted in English, the source language (the default is French)."""
    with translation.override("en"):
        yield


def assert_refused(factory, **fields):
    with pytest.raises(IntegrityError), transaction.atomic():
        factory(**fields)


# Program ----------------------------------------------------------------------------------


def test_valid_program_is_accepted():
    program = ProgramFactory(
        expiry_policy=Program.ExpiryPolicy.AFTER_EARNING,
        expiry_months=24,
        gross_margin_rate=Decimal("1"),
        point_cost_amount=Decimal("0"),
    )
    assert Program.objects.filter(pk=program.pk).exists()


@pytest.mark.parametrize("rate", [Decimal("0"), Decimal("-1")])
def test_program_base_earn_rate_must_be_positive(rate):
    assert_refused(ProgramFactory, base_earn_rate=rate)


@pytest.mark.parametrize("rate", [Decimal("1.0001"), Decimal("-0.01")])
def test_program_gross_margin_rate_between_0_and_1(rate):
    assert_refused(ProgramFactory, gross_margin_rate=rate)


def test_program_point_cost_not_negative():
    assert_refused(ProgramFactory, point_cost_amount=Decimal("-0.01"))


@pytest.mark.parametrize(
    "policy", [Program.ExpiryPolicy.AFTER_EARNING, Program.ExpiryPolicy.AFTER_INACTIVITY]
)
def test_program_expiry_policy_refuses_null_months(policy):
    # A CHECK whose condition is NULL (unknown) passes: `expiry_months >= 1` must not be the
    # only thing standing between a policy and NULL months.
    assert_refused(ProgramFactory, expiry_policy=policy, expiry_months=None)


def test_program_expiry_policy_refuses_zero_months():
    assert_refused(
        ProgramFactory, expiry_policy=Program.ExpiryPolicy.AFTER_INACTIVITY, expiry_months=0
    )


def test_program_without_expiry_has_no_months():
    assert_refused(ProgramFactory, expiry_policy=Program.ExpiryPolicy.NONE, expiry_months=12)


@pytest.mark.parametrize("currency", ["eur", "EU", "E1R", "Eur"])
def test_program_currency_is_three_upper_case_letters(currency):
    assert_refused(ProgramFactory, currency=currency)


def test_program_slug_is_unique():
    ProgramFactory(slug="same")
    assert_refused(ProgramFactory, slug="same")


# Store ------------------------------------------------------------------------------------


def test_store_slug_unique_per_program_only():
    program, other = ProgramFactory(), ProgramFactory()
    StoreFactory(program=program, slug="paris")
    assert_refused(StoreFactory, program=program, slug="paris")
    StoreFactory(program=other, slug="paris")  # another program may reuse it


# Tier -------------------------------------------------------------------------------------


def test_tier_rank_unique_per_program():
    program = ProgramFactory()
    TierFactory(program=program, rank=1, name="Silver")
    assert_refused(TierFactory, program=program, rank=1, name="Gold")
    TierFactory(program=ProgramFactory(), rank=1, name="Silver")


def test_tier_name_unique_per_program():
    program = ProgramFactory()
    TierFactory(program=program, rank=1, name="Silver")
    assert_refused(TierFactory, program=program, rank=2, name="Silver")


def test_tier_earn_multiplier_positive():
    assert_refused(TierFactory, earn_multiplier=Decimal("0"))


def test_tier_qualify_threshold_not_negative():
    assert_refused(TierFactory, qualify_threshold=Decimal("-1"))


def test_tier_retain_threshold_not_above_qualify_threshold():
    TierFactory(qualify_threshold=Decimal("300"), retain_threshold=Decimal("300"))
    assert_refused(
        TierFactory, qualify_threshold=Decimal("300"), retain_threshold=Decimal("300.01")
    )
    assert_refused(TierFactory, qualify_threshold=Decimal("300"), retain_threshold=Decimal("-1"))


# Earning rule -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [EarningRule.Kind.RATE, EarningRule.Kind.MULTIPLIER])
def test_rate_and_multiplier_rules_need_positive_value(kind):
    assert_refused(EarningRuleFactory, kind=kind, value=Decimal("0"))
    assert_refused(EarningRuleFactory, kind=kind, value=Decimal("-1"))


def test_exclusion_and_minimum_basket_may_be_zero():
    EarningRuleFactory(kind=EarningRule.Kind.EXCLUSION, value=Decimal("0"), category="gift")
    EarningRuleFactory(kind=EarningRule.Kind.MINIMUM_BASKET, value=Decimal("0"))
    assert_refused(EarningRuleFactory, kind=EarningRule.Kind.MINIMUM_BASKET, value=Decimal("-1"))


def test_rule_validity_ordered():
    EarningRuleFactory(valid_from=date(2026, 1, 1), valid_until=date(2026, 1, 1))
    assert_refused(EarningRuleFactory, valid_from=date(2026, 1, 2), valid_until=date(2026, 1, 1))


@pytest.mark.parametrize("scope", [{"category": "beauty"}, {"sku": "SKU-1"}])
def test_minimum_basket_not_per_product(scope):
    assert_refused(
        EarningRuleFactory, kind=EarningRule.Kind.MINIMUM_BASKET, value=Decimal("5"), **scope
    )


# Program cost -----------------------------------------------------------------------------


@pytest.mark.parametrize("amount", [Decimal("0"), Decimal("-10")])
def test_program_cost_amount_positive(amount):
    assert_refused(ProgramCostFactory, cost_amount=amount)


def test_one_off_cost_refuses_null_amortisation_months():
    ProgramCostFactory(kind=ProgramCost.Kind.ONE_OFF, amortisation_months=12)
    # Same NULL pitfall: `amortisation_months >= 1` is unknown for NULL, and CHECK lets it by.
    assert_refused(ProgramCostFactory, kind=ProgramCost.Kind.ONE_OFF, amortisation_months=None)


def test_one_off_cost_refuses_zero_amortisation_months():
    assert_refused(ProgramCostFactory, kind=ProgramCost.Kind.ONE_OFF, amortisation_months=0)


def test_one_off_cost_has_no_end_date():
    assert_refused(
        ProgramCostFactory,
        kind=ProgramCost.Kind.ONE_OFF,
        amortisation_months=12,
        starts_on=date(2026, 1, 1),
        ends_on=date(2026, 6, 1),
    )


def test_recurring_cost_is_not_amortised():
    assert_refused(ProgramCostFactory, kind=ProgramCost.Kind.RECURRING, amortisation_months=12)


def test_cost_dates_ordered():
    ProgramCostFactory(starts_on=date(2026, 1, 1), ends_on=date(2026, 1, 1))
    assert_refused(ProgramCostFactory, starts_on=date(2026, 1, 2), ends_on=date(2026, 1, 1))


# clean() and validators -------------------------------------------------------------------


def test_program_clean_requires_expiry_months_with_a_policy():
    program = ProgramFactory.build(expiry_policy=Program.ExpiryPolicy.AFTER_EARNING)
    with pytest.raises(ValidationError) as exc:
        program.full_clean()
    assert exc.value.message_dict["expiry_months"] == ["Say after how many months points expire."]


def test_program_clean_drops_months_without_policy():
    program = ProgramFactory.build(expiry_policy=Program.ExpiryPolicy.NONE, expiry_months=12)
    program.full_clean()
    assert program.expiry_months is None
    program.save()


def test_time_zone_validator_refuses_unknown_zone():
    program = ProgramFactory.build(time_zone="Mars/Olympus")
    with pytest.raises(ValidationError) as exc:
        program.full_clean()
    assert exc.value.message_dict["time_zone"] == ["Unknown time zone: Mars/Olympus"]
    with pytest.raises(ValidationError):
        validate_time_zone("Mars/Olympus")
    validate_time_zone("Europe/Paris")


def test_currency_validator_refuses_lower_case():
    program = ProgramFactory.build(currency="eur")
    with pytest.raises(ValidationError) as exc:
        program.full_clean()
    assert "currency" in exc.value.message_dict


def test_rule_clean_refuses_store_of_another_program():
    program = ProgramFactory()
    foreign_store = StoreFactory(program=ProgramFactory())
    rule = EarningRuleFactory.build(program=program, store=foreign_store)
    with pytest.raises(ValidationError) as exc:
        rule.full_clean()
    assert exc.value.message_dict["store"] == ["This store belongs to another program."]

    rule.store = StoreFactory(program=program)
    rule.full_clean()


def test_rule_clean_refuses_zero_rate_and_per_product_minimum_basket():
    rule = EarningRuleFactory.build(
        program=ProgramFactory(), kind=EarningRule.Kind.RATE, value=Decimal("0")
    )
    with pytest.raises(ValidationError) as exc:
        rule.full_clean()
    assert "value" in exc.value.message_dict

    rule.kind, rule.value, rule.category = EarningRule.Kind.MINIMUM_BASKET, Decimal("5"), "x"
    with pytest.raises(ValidationError) as exc:
        rule.full_clean()
    assert "category" in exc.value.message_dict


def test_cost_clean_refuses_one_off_with_end_date():
    program = ProgramFactory()
    cost = ProgramCost(
        program=program,
        category=ProgramCost.Category.DESIGN_LAUNCH,
        label="Design",
        kind=ProgramCost.Kind.ONE_OFF,
        cost_amount=Decimal("1000"),
        starts_on=date(2026, 1, 1),
        ends_on=date(2026, 12, 31),
        amortisation_months=12,
    )
    with pytest.raises(ValidationError) as exc:
        cost.full_clean()
    assert exc.value.message_dict["ends_on"] == ["A one-off cost has no end date."]

    cost.ends_on, cost.amortisation_months = None, None
    with pytest.raises(ValidationError) as exc:
        cost.full_clean()
    assert "amortisation_months" in exc.value.message_dict

    cost.kind, cost.amortisation_months = ProgramCost.Kind.RECURRING, 6
    with pytest.raises(ValidationError) as exc:
        cost.full_clean()
    assert exc.value.message_dict["amortisation_months"] == ["Only one-off costs are amortised."]


# The earning grid's version ---------------------------------------------------------------


def age_program(program):
    """Set the program's updated_at an hour back, so that any touch is visible."""
    past = timezone.now() - timedelta(hours=1)
    Program.objects.filter(pk=program.pk).update(updated_at=past)
    program.refresh_from_db()
    return program.updated_at


def test_saving_a_rule_moves_program_updated_at():
    program = ProgramFactory()
    before = age_program(program)
    rule = EarningRuleFactory(program=program)
    program.refresh_from_db()
    assert program.updated_at > before

    before = age_program(program)
    rule.value = Decimal("3")
    rule.save()
    program.refresh_from_db()
    assert program.updated_at > before

    before = age_program(program)
    rule.delete()
    program.refresh_from_db()
    assert program.updated_at > before


def test_program_rules_sees_a_rule_change_at_once():
    program = ProgramFactory()
    first = EarningRuleFactory(program=program, name="First")
    age_program(program)
    assert [r.name for r in selectors.program_rules(program).rules] == ["First"]

    EarningRuleFactory(program=program, name="Second")
    program = Program.objects.get(pk=program.pk)
    assert {r.name for r in selectors.program_rules(program).rules} == {"First", "Second"}

    first.delete()
    program = Program.objects.get(pk=program.pk)
    assert [r.name for r in selectors.program_rules(program).rules] == ["Second"]

    rule = EarningRule.objects.get(name="Second")
    rule.value = Decimal("4")
    rule.save()
    program = Program.objects.get(pk=program.pk)
    assert [r.value for r in selectors.program_rules(program).rules] == [Decimal("4")]
