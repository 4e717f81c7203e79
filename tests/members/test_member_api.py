"""Members over the POS API: enrolment (idempotent on email or phone), lookup and history."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from members import services
from members.cards import format_card_number, is_valid_card_number
from members.ledger import find_mismatches
from members.models import Member
from members.tiers import add_months
from tests.factories import (
    ProgramFactory,
    StaffUserFactory,
    StoreFactory,
    TierFactory,
    enrol,
    make_api_key,
    record_member_purchase,
)
from tests.members.helpers import assert_problem, snapshot

pytestmark = pytest.mark.django_db

ENROL_URL = "/api/v1/members/"
LOOKUP_URL = "/api/v1/members/lookup/"


def history_url(card):
    return f"/api/v1/members/{card}/history/"


# Helpers --------------------------------------------------------------------------------------


def enrol_api(client, **body):
    return client.post(ENROL_URL, body, format="json")


def other_program_member():
    program = ProgramFactory(slug="other")
    TierFactory(program=program, name="Other entry", rank=0)
    return enrol(program, email="stranger@example.fr", phone="+33699999999")


# Enrolment ------------------------------------------------------------------------------------


def test_enrolment_is_201_with_a_valid_card_in_the_entry_tier(api, program):
    TierFactory(program=program, name="Gold", rank=2)
    response = enrol_api(api, email="Claire.Martin@Example.fr", first_name="Claire")
    assert response.status_code == 201, response.content
    body = response.json()
    assert len(body["card_number"]) == 13
    assert is_valid_card_number(body["card_number"])
    assert body["tier"] == "Bronze"
    assert body["email"] == "claire.martin@example.fr"
    assert (body["points_available"], body["points_pending"]) == (0, 0)
    member = Member.objects.get()
    assert member.card_number == body["card_number"]
    assert member.program_id == program.pk


def test_enrolling_the_same_email_again_is_200_with_the_same_member(api):
    first = enrol_api(api, email="claire@example.fr")
    assert first.status_code == 201
    again = enrol_api(api, email="CLAIRE@example.fr", first_name="Claire")
    assert again.status_code == 200, again.content
    assert again.json()["card_number"] == first.json()["card_number"]
    assert Member.objects.count() == 1


def test_enrolling_the_same_phone_again_is_200_with_the_same_member(api):
    first = enrol_api(api, phone="+33 6 12 34 56 78")
    assert first.status_code == 201
    again = enrol_api(api, phone="+33612345678")
    assert again.status_code == 200, again.content
    assert again.json()["card_number"] == first.json()["card_number"]
    assert Member.objects.count() == 1


def test_email_of_one_member_and_phone_of_another_is_409_enrolment_conflict(api, program):
    enrol(program, email="a@example.fr")
    enrol(program, phone="+33600000002")
    before = snapshot()
    response = enrol_api(api, email="a@example.fr", phone="+33600000002")
    assert_problem(response, 409, "enrolment_conflict")
    assert snapshot() == before


def test_invalid_email_is_400_on_email(api):
    before = snapshot()
    response = enrol_api(api, email="not-an-email")
    assert_problem(response, 400, "invalid", field="email")
    assert snapshot() == before


def test_birth_date_in_the_future_is_400_on_birth_date(api):
    before = snapshot()
    tomorrow = timezone.localdate() + timedelta(days=1)
    response = enrol_api(api, email="future@example.fr", birth_date=tomorrow.isoformat())
    assert_problem(response, 400, "invalid", field="birth_date")
    assert snapshot() == before


def test_unknown_referral_code_is_422_on_referral_code(api, member):
    before = snapshot()
    response = enrol_api(api, email="new@example.fr", referral_code="ZZZZZZZZ")
    assert_problem(response, 422, "unknown_referral_code", field="referral_code")
    assert snapshot() == before


def test_valid_referral_code_sets_referred_by(api, member):
    response = enrol_api(api, email="friend@example.fr", referral_code=member.referral_code)
    assert response.status_code == 201, response.content
    friend = Member.objects.get(card_number=response.json()["card_number"])
    assert friend.referred_by_id == member.pk


# Lookup ---------------------------------------------------------------------------------------


def test_lookup_by_card_number_returns_balances_and_tier(api, store, member):
    record_member_purchase(store, member, "L-1", "12.90", timezone.now() - timedelta(hours=1))
    response = api.get(LOOKUP_URL, {"card_number": member.card_number})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["card_number"] == member.card_number
    # 12.90 EUR at 1 point per EUR, floor: 12 points, pending for the return window.
    assert (body["points_available"], body["points_pending"]) == (0, 12)
    assert body["tier"] == "Bronze"
    assert find_mismatches() == []


def test_lookup_by_card_number_accepts_spaces(api, member):
    spaced = format_card_number(member.card_number)
    assert " " in spaced
    response = api.get(LOOKUP_URL, {"card_number": spaced})
    assert response.status_code == 200, response.content
    assert response.json()["card_number"] == member.card_number


def test_lookup_by_email_is_case_insensitive(api, member):
    response = api.get(LOOKUP_URL, {"email": "Claire@EXAMPLE.fr"})
    assert response.status_code == 200, response.content
    assert response.json()["card_number"] == member.card_number


def test_lookup_by_phone(api, program):
    member = enrol(program, phone="+33612345678")
    response = api.get(LOOKUP_URL, {"phone": "+33 6 12 34 56 78"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["card_number"] == member.card_number
    assert {"points_available", "points_pending", "tier"} <= set(body)


@pytest.mark.parametrize(
    "params",
    [{}, {"card_number": "x", "email": "claire@example.fr"}, {"email": "a@b.fr", "phone": "0612"}],
    ids=["none", "card-and-email", "email-and-phone"],
)
def test_lookup_needs_exactly_one_parameter(api, member, params):
    if "card_number" in params:
        params["card_number"] = member.card_number
    response = api.get(LOOKUP_URL, params)
    assert_problem(response, 400, "invalid")


def test_lookup_of_an_unknown_member_is_404_member_not_found(api, member):
    response = api.get(LOOKUP_URL, {"email": "nobody@example.fr"})
    assert_problem(response, 404, "member_not_found", field="email")


def test_lookup_of_another_programs_member_is_404(api, member):
    stranger = other_program_member()
    for params in (
        {"card_number": stranger.card_number},
        {"email": stranger.email},
        {"phone": stranger.phone},
    ):
        response = api.get(LOOKUP_URL, params)
        assert_problem(response, 404, "member_not_found")


def test_lookup_gives_tier_progress_and_expiring_points(api, program, store, member):
    program.expiry_policy = "after_earning"
    program.expiry_months = 12
    program.return_window_days = 0
    program.save()
    TierFactory(
        program=program,
        name="Silver",
        rank=1,
        qualify_threshold=Decimal("100"),
        retain_threshold=Decimal("80"),
        perks="Free delivery\nPrivate sales",
    )
    record_member_purchase(store, member, "P-1", "40.00", timezone.now() - timedelta(days=2))
    body = api.get(LOOKUP_URL, {"card_number": member.card_number}).json()
    progress = body["progress"]
    assert progress["metric"] == "spend"
    assert progress["qualifying_value"] == "40.00"
    assert progress["tier"]["name"] == "Bronze"
    assert progress["next_tier"]["name"] == "Silver"
    assert progress["next_tier"]["missing"] == "60.00"
    assert progress["keep"] is None  # nothing to keep in the entry tier
    earned_on = timezone.localdate(timezone.now() - timedelta(days=2), program.tzinfo)
    expires_on = add_months(earned_on, 12)
    assert progress["expiring"] == [{"date": expires_on.isoformat(), "points": 40}]
    assert progress["expiring_within_30_days"] == 0

    response = api.post(
        "/api/v1/purchases/",
        {
            "receipt_id": "P-2",
            "card_number": member.card_number,
            "amount": "60.00",
            "currency": "EUR",
            "occurred_at": timezone.now().isoformat(),
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["tier"] == "Silver"
    assert response.json()["tier_upgrade"] == {"from": "Bronze", "to": "Silver"}
    progress = api.get(LOOKUP_URL, {"card_number": member.card_number}).json()["progress"]
    assert progress["tier"] == {
        "name": "Silver",
        "rank": 1,
        "earn_multiplier": "1.00",
        "perks": ["Free delivery", "Private sales"],
    }
    assert progress["next_tier"] is None
    assert progress["keep"]["threshold"] == "80.00"
    assert progress["keep"]["missing"] == "0"
    assert progress["keep"]["review_on"] is not None
    assert find_mismatches() == []


def test_lookup_takes_at_most_6_queries(api, member, django_assert_max_num_queries):
    api.get(LOOKUP_URL, {"card_number": member.card_number})  # warm-up
    with django_assert_max_num_queries(6):
        response = api.get(LOOKUP_URL, {"card_number": member.card_number})
    assert response.status_code == 200


# History --------------------------------------------------------------------------------------


@pytest.fixture
def history(store, member):
    """Three purchases an hour apart (10.00, 20.00 and 30.00 EUR) and a staff adjustment."""
    now = timezone.now()
    record_member_purchase(store, member, "H-1", "10.00", now - timedelta(hours=3))
    record_member_purchase(store, member, "H-2", "20.00", now - timedelta(hours=2))
    record_member_purchase(store, member, "H-3", "30.00", now - timedelta(hours=1))
    services.adjust_points(
        member=member, points=5, reason="goodwill", staff_user=StaffUserFactory()
    )
    return member


def test_history_is_newest_first_with_kind_bucket_points_and_receipt(api, history):
    response = api.get(history_url(history.card_number))
    assert response.status_code == 200, response.content
    body = response.json()
    rows = [(r["kind"], r["bucket"], r["points"], r["receipt_id"]) for r in body["results"]]
    assert rows == [
        ("adjust", "available", 5, None),
        ("earn", "pending", 30, "H-3"),
        ("earn", "pending", 20, "H-2"),
        ("earn", "pending", 10, "H-1"),
    ]
    assert (body["points_available"], body["points_pending"]) == (5, 60)
    assert find_mismatches() == []


def test_history_is_paginated(api, history):
    first = api.get(history_url(history.card_number), {"page_size": 2})
    assert first.status_code == 200, first.content
    page = first.json()
    assert page["count"] == 4
    assert page["next"]
    assert [r["receipt_id"] for r in page["results"]] == [None, "H-3"]
    second = api.get(page["next"])
    assert second.status_code == 200, second.content
    page = second.json()
    assert page["next"] is None
    assert [r["receipt_id"] for r in page["results"]] == ["H-2", "H-1"]


def test_history_accepts_a_card_number_with_spaces(api, history):
    response = api.get(history_url(format_card_number(history.card_number)))
    assert response.status_code == 200, response.content
    assert response.json()["count"] == 4


def test_history_of_another_programs_member_is_404(api, member):
    stranger = other_program_member()
    response = api.get(history_url(stranger.card_number))
    assert_problem(response, 404, "member_not_found")


def test_a_store_of_another_program_cannot_read_a_members_history(api, member):
    stranger = other_program_member()
    other_client = APIClient()
    other_client.credentials(
        HTTP_AUTHORIZATION=f"Api-Key {make_api_key(StoreFactory(program=stranger.program))}"
    )
    response = other_client.get(history_url(member.card_number))
    assert_problem(response, 404, "member_not_found")


def test_history_takes_at_most_6_queries(api, history, django_assert_max_num_queries):
    api.get(history_url(history.card_number))  # warm-up
    with django_assert_max_num_queries(6):
        response = api.get(history_url(history.card_number), {"page_size": 2})
    assert response.status_code == 200
