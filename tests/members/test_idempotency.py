"""The Idempotency-Key header: a retry gets the first answer byte for byte, another body with
the same key is refused, errors are not remembered, old answers are pruned."""

from datetime import timedelta

import pytest
from django.utils import timezone

from loyalty.models import IdempotencyRecord
from loyalty.services import prune_idempotency_records
from members.ledger import find_mismatches
from members.models import Member
from tests.factories import StoreFactory
from tests.members.helpers import assert_problem, pos_client, snapshot

pytestmark = pytest.mark.django_db

ENROL_URL = "/api/v1/members/"
PURCHASE_URL = "/api/v1/purchases/"
KEY = {"HTTP_IDEMPOTENCY_KEY": "abc-1"}


# Helpers --------------------------------------------------------------------------------------


def purchase_body(card, amount="20.00", currency="EUR", receipt="R-1"):
    return {
        "receipt_id": receipt,
        "card_number": card,
        "amount": amount,
        "currency": currency,
        "occurred_at": (timezone.now() - timedelta(hours=1)).replace(microsecond=0).isoformat(),
    }


# Enrolment with a key -------------------------------------------------------------------------


def test_enrolment_retry_with_the_key_returns_the_first_answer_byte_identical(api):
    # Without email or phone nothing else makes the enrolment idempotent: only the key.
    first = api.post(ENROL_URL, {"first_name": "Anon"}, format="json", **KEY)
    assert first.status_code == 201, first.content
    retry = api.post(ENROL_URL, {"first_name": "Anon"}, format="json", **KEY)
    assert retry.status_code == first.status_code
    assert retry.content == first.content
    assert Member.objects.count() == 1
    assert IdempotencyRecord.objects.count() == 1


def test_same_key_with_another_body_is_422_idempotency_key_reused(api):
    assert api.post(ENROL_URL, {"first_name": "Anon"}, format="json", **KEY).status_code == 201
    before = snapshot()
    response = api.post(ENROL_URL, {"first_name": "Other"}, format="json", **KEY)
    assert_problem(response, 422, "idempotency_key_reused", field="Idempotency-Key")
    assert snapshot() == before


def test_the_same_key_from_another_api_key_is_independent(api, program):
    other_store = pos_client(StoreFactory(program=program, slug="lyon-01"))
    first = api.post(ENROL_URL, {"first_name": "Anon"}, format="json", **KEY)
    second = other_store.post(ENROL_URL, {"first_name": "Anon"}, format="json", **KEY)
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["card_number"] != second.json()["card_number"]
    assert Member.objects.count() == 2
    assert IdempotencyRecord.objects.count() == 2


def test_a_key_longer_than_255_characters_is_400_invalid_idempotency_key(api):
    before = snapshot()
    response = api.post(
        ENROL_URL, {"first_name": "Anon"}, format="json", HTTP_IDEMPOTENCY_KEY="k" * 256
    )
    assert_problem(response, 400, "invalid_idempotency_key", field="Idempotency-Key")
    assert snapshot() == before


def test_a_failed_request_is_not_remembered_and_a_corrected_retry_succeeds(api, member):
    before = snapshot()
    failed = api.post(
        PURCHASE_URL, purchase_body(member.card_number, currency="USD"), format="json", **KEY
    )
    assert_problem(failed, 422, "wrong_currency", field="currency")
    assert IdempotencyRecord.objects.count() == 0
    assert snapshot() == before

    corrected = api.post(PURCHASE_URL, purchase_body(member.card_number), format="json", **KEY)
    assert corrected.status_code == 201, corrected.content
    # 20.00 EUR at 1 point per EUR: 20 points.
    assert corrected.json()["points_earned"] == 20
    assert IdempotencyRecord.objects.count() == 1
    assert find_mismatches() == []


# Purchase with a key --------------------------------------------------------------------------


def test_purchase_retry_with_the_key_is_byte_identical_and_writes_once(api, member):
    body = purchase_body(member.card_number)
    first = api.post(PURCHASE_URL, body, format="json", **KEY)
    assert first.status_code == 201, first.content
    before = snapshot()
    retry = api.post(PURCHASE_URL, body, format="json", **KEY)
    assert retry.status_code == first.status_code
    assert retry.content == first.content
    assert snapshot() == before
    member.refresh_from_db()
    assert member.points_pending == 20
    assert find_mismatches() == []


# Pruning --------------------------------------------------------------------------------------


def age_record(key, hours):
    IdempotencyRecord.objects.filter(key=key).update(
        created_at=timezone.now() - timedelta(hours=hours)
    )


def test_records_older_than_the_keep_window_are_pruned_recent_ones_kept(api, settings):
    settings.IDEMPOTENCY_KEEP_HOURS = 48
    for key in ("old", "recent"):
        response = api.post(ENROL_URL, {"first_name": key}, format="json", HTTP_IDEMPOTENCY_KEY=key)
        assert response.status_code == 201
    age_record("old", 49)
    age_record("recent", 1)

    assert prune_idempotency_records() == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["recent"]


def test_records_are_kept_at_least_24_hours_whatever_the_setting(api, settings):
    settings.IDEMPOTENCY_KEEP_HOURS = 1
    for key in ("day-old", "two-hours"):
        response = api.post(ENROL_URL, {"first_name": key}, format="json", HTTP_IDEMPOTENCY_KEY=key)
        assert response.status_code == 201
    age_record("day-old", 25)
    age_record("two-hours", 2)

    assert prune_idempotency_records() == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["two-hours"]
