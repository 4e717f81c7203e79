"""Campaign budgets under real concurrent purchases (PostgreSQL, real threads)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from loyalty.models import Campaign, CampaignBudgetUsage
from members.ledger import find_mismatches
from members.models import CampaignAward, PointsEntry
from tests.concurrency import race
from tests.factories import enrol, make_api_key

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.concurrency,
    pytest.mark.django_db(transaction=True),
]


def test_fifty_concurrent_purchases_against_a_budget_for_ten_award_exactly_ten(program, store):
    key = make_api_key(store)
    Campaign.objects.create(
        program=program,
        name="First fifty",
        status=Campaign.Status.ACTIVE,
        starts_at=timezone.now() - timedelta(days=1),
        effect=Campaign.Effect.FIXED,
        effect_value=Decimal("25"),
        budget_points=250,  # ten bonuses of 25
        budget_period=Campaign.Period.DAY,
        period_budget_points=1000,
    )
    members = [enrol(program, email=f"m{i}@example.fr") for i in range(50)]
    moment = timezone.now().isoformat()

    def work(i):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
        body = {
            "receipt_id": f"RACE-{i}",
            "card_number": members[i].card_number,
            "amount": "20.00",
            "currency": "EUR",
            "occurred_at": moment,
        }
        return client.post("/api/v1/purchases/", body, format="json")

    responses = race(50, work)
    assert [getattr(r, "status_code", r) for r in responses] == [201] * 50
    earned = sorted(r.json()["points_earned"] for r in responses)
    assert earned == [20] * 40 + [45] * 10
    assert CampaignAward.objects.filter(points=25).count() == 10
    assert PointsEntry.objects.filter(kind="bonus").count() == 10
    spent = dict(CampaignBudgetUsage.objects.values_list("scope", "spent_points"))
    assert spent["total"] == 250
    assert sorted(spent.values()) == [250, 250]  # the day's scope counted the same ten
    assert find_mismatches() == []
