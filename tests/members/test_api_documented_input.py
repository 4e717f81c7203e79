"""Input the schema documents as invalid is refused (400 invalid) rather than guessed at or left
to the database: findings of the schema-driven fuzzing (bin/fuzz-api)."""

import pytest

from members.models import Member
from tests.factories import make_reward
from tests.members.helpers import assert_problem

pytestmark = pytest.mark.django_db

ENROL_URL = "/api/v1/members/"


def history_url(member):
    return f"/api/v1/members/{member.card_number}/history/"


def test_a_phone_longer_than_twenty_characters_once_cleaned_is_refused(api):
    # 21 characters, all kept: the column holds 20 (PostgreSQL refused it with a server error).
    body = {"phone": "+12345678901234567890"}
    problem = assert_problem(api.post(ENROL_URL, body, format="json"), 400, "invalid", "phone")
    assert problem["errors"][0]["field"] == "phone"
    assert not Member.objects.exists()


def test_a_phone_of_twenty_characters_is_enrolled(api):
    response = api.post(ENROL_URL, {"phone": "+1234567890123456789"}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["phone"] == "+1234567890123456789"


@pytest.mark.parametrize("consent", [0, 1, "true", "yes", None])
def test_marketing_consent_is_a_json_boolean_only(api, consent):
    body = {"email": "claire@example.fr", "marketing_consent": consent}
    assert_problem(api.post(ENROL_URL, body, format="json"), 400, "invalid", "marketing_consent")
    assert not Member.objects.exists()


def test_a_reward_id_as_a_string_or_a_float_is_refused(api, member, program):
    reward = make_reward(program, points_cost=10)
    url = f"/api/v1/members/{member.card_number}/redemptions/"
    for reward_id in (str(reward.pk), float(reward.pk), True):
        response = api.post(
            url, {"reward_id": reward_id}, format="json", HTTP_IDEMPOTENCY_KEY=f"k-{reward_id}"
        )
        assert_problem(response, 400, "invalid", "reward_id")
    # The same id as a JSON integer passes validation (the member has no points).
    response = api.post(url, {"reward_id": reward.pk}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert_problem(response, 422, "not_enough_points")


@pytest.mark.parametrize(
    "query",
    ["page_size=abc", "page_size=0", "page=last", "page=", "page=0", "page=-1", "page=1.5"],
)
def test_history_pages_are_positive_integers(api, member, query):
    response = api.get(f"{history_url(member)}?{query}")
    field = query.partition("=")[0]
    assert_problem(response, 400, "invalid", field)


def test_history_page_size_is_capped_and_a_page_beyond_the_last_is_not_found(api, member):
    response = api.get(f"{history_url(member)}?page_size=500&page=1")
    assert response.status_code == 200, response.content
    assert response.json()["count"] == 0
    assert_problem(api.get(f"{history_url(member)}?page=2"), 404, "not_found")
