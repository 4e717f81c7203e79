"""Staff administration of campaigns and segments: dates entered and shown in the program's
time zone, clear validation errors, spend against budget, no query per campaign."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from loyalty.models import Campaign, CampaignBudgetUsage, Segment
from tests.factories import ProgramFactory, StoreFactory, TierFactory

pytestmark = pytest.mark.django_db

ADD = reverse("admin:loyalty_campaign_add")


@pytest.fixture(autouse=True)
def english(admin_client):
    """Errors are asserted in English; the list's date format in French (set per request)."""
    admin_client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"


@pytest.fixture
def program():
    # Settings use Europe/Paris; this program runs in New York, so the zone used is visible.
    return ProgramFactory(name="NY", time_zone="America/New_York", point_cost_amount="0.02")


def form(program, **overrides):
    data = {
        "program": program.pk,
        "name": "Black Friday",
        "description": "",
        "status": "scheduled",
        "trigger": "purchase",
        "starts_at_0": "2026-11-27",
        "starts_at_1": "00:00:00",
        "ends_at_0": "2026-11-28",
        "ends_at_1": "00:00:00",
        "effect": "multiplier",
        "effect_value": "2",
        "target_categories": "",
        "target_skus": "",
        "hour_from": "",
        "hour_until": "",
        "min_basket_amount": "",
        "basket_categories": "",
        "basket_skus": "",
        "purchase_number": "",
        "enrolled_since": "",
        "enrolled_before": "",
        "segment": "",
        "priority": "0",
        "budget_points": "",
        "budget_amount": "",
        "budget_period": "",
        "period_budget_points": "",
        "period_budget_amount": "",
        "holdout_percent": "10",
        "referral_limit": "",
        "inactive_months": "",
        "birthday_on_day": "on",
    }
    data.update(overrides)
    return data


def errors(response):
    return response.context["adminform"].form.errors


def test_a_campaign_is_created_with_dates_in_the_programs_time_zone(admin_client, program):
    response = admin_client.post(
        ADD, form(program, weekdays=["4", "5"], channels=["shop", "web"]), follow=False
    )
    assert response.status_code == 302, errors(response)
    campaign = Campaign.objects.get()
    # Midnight in New York (UTC-5 in November) is 05:00 UTC.
    assert campaign.starts_at == datetime(2026, 11, 27, 5, 0, tzinfo=UTC)
    assert campaign.ends_at == datetime(2026, 11, 28, 5, 0, tzinfo=UTC)
    assert campaign.weekdays == [4, 5]
    assert campaign.channels == ["shop", "web"]
    page = admin_client.get(reverse("admin:loyalty_campaign_change", args=[campaign.pk]))
    html = page.content.decode()
    assert 'name="starts_at_1" value="00:00:00"' in html  # not 05:00 UTC nor 06:00 in Paris
    assert 'name="ends_at_0" value="2026-11-28"' in html
    listing = admin_client.get(reverse("admin:loyalty_campaign_changelist")).content.decode()
    assert 'field-starts_local">Nov. 27, 2026, midnight<' in listing


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"ends_at_0": "2026-11-26"}, "ends_at", "The end must be after the start."),
        (
            {"effect": "fixed", "effect_value": "10.5"},
            "effect_value",
            "A fixed bonus is a whole number of points.",
        ),
        ({"effect_value": "1"}, "effect_value", "A multiplier must be above 1"),
        (
            {"trigger": "birthday"},
            "effect",
            "A lifecycle bonus is a fixed number of points.",
        ),
        (
            {"trigger": "reactivation", "effect": "fixed", "effect_value": "10"},
            "inactive_months",
            "Say after how many months without activity.",
        ),
        ({"hour_from": "18"}, "hour_until", "Give both hours, or neither."),
        ({"holdout_percent": "100"}, "holdout_percent", "A percentage from 0 to less than 100."),
        (
            {"budget_period": "week"},
            "period_budget_points",
            "Give the cap per period in points or money.",
        ),
        ({"period_budget_points": "500"}, "budget_period", "Choose the period of the cap."),
    ],
)
def test_invalid_campaigns_get_a_clear_error_on_the_field(
    admin_client, program, overrides, field, message
):
    response = admin_client.post(ADD, form(program, **overrides))
    assert response.status_code == 200
    assert any(message in e for e in errors(response)[field]), errors(response)
    assert not Campaign.objects.exists()


def test_tiers_and_stores_of_another_program_are_refused(admin_client, program):
    other = ProgramFactory()
    tier = TierFactory(program=other, name="Elsewhere")
    store = StoreFactory(program=other, name="Far away")
    response = admin_client.post(ADD, form(program, tiers=[tier.pk], stores=[store.pk]))
    assert response.status_code == 200
    assert "Not of this program: Elsewhere." in errors(response)["tiers"]
    assert any("Far away" in e for e in errors(response)["stores"])


def test_a_segment_of_another_program_is_refused(admin_client, program):
    segment = Segment.objects.create(program=ProgramFactory(), name="Other")
    response = admin_client.post(ADD, form(program, segment=segment.pk))
    assert "This segment belongs to another program." in errors(response)["segment"]


def test_staff_see_spend_against_budget(admin_client, program):
    campaign = Campaign.objects.create(
        program=program,
        name="Capped",
        starts_at=timezone.now(),
        effect="fixed",
        effect_value=Decimal(10),
        budget_points=1000,
    )
    CampaignBudgetUsage.objects.create(
        campaign=campaign, scope="total", spent_points=250, cap_points=1000
    )
    page = admin_client.get(reverse("admin:loyalty_campaign_changelist")).content.decode()
    # 250 x 0.02 = 5.00 of 1000 x 0.02 = 20.00.
    assert "total: 250 / 1000 points (5.00 / 20.00 EUR)" in page


def test_the_campaign_list_takes_the_same_queries_for_many_campaigns(
    admin_client, program, django_assert_max_num_queries
):
    def add(n):
        for i in range(n):
            campaign = Campaign.objects.create(
                program=program,
                name=f"C{i}-{n}",
                starts_at=timezone.now() - timedelta(days=i),
                effect="fixed",
                effect_value=Decimal(5),
                budget_points=100,
            )
            CampaignBudgetUsage.objects.create(
                campaign=campaign, scope="total", spent_points=5, cap_points=100
            )

    add(2)
    with django_assert_max_num_queries(12) as few:
        admin_client.get(reverse("admin:loyalty_campaign_changelist"))
    add(8)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = admin_client.get(reverse("admin:loyalty_campaign_changelist"))
    assert response.context["cl"].result_count == 10


def test_campaign_and_segment_pages_load(admin_client, program):
    campaign = Campaign.objects.create(
        program=program, name="C", starts_at=timezone.now(), effect="fixed", effect_value=5
    )
    segment = Segment.objects.create(program=program, name="S", min_recency_score=4)
    for name, args in [
        ("admin:loyalty_campaign_change", [campaign.pk]),
        ("admin:loyalty_segment_changelist", []),
        ("admin:loyalty_segment_change", [segment.pk]),
        ("admin:loyalty_segment_add", []),
        (ADD, None),
    ]:
        target = name if args is None else reverse(name, args=args)
        assert admin_client.get(target).status_code == 200


def test_a_segment_score_out_of_range_is_refused(admin_client, program):
    response = admin_client.post(
        reverse("admin:loyalty_segment_add"),
        {"program": program.pk, "name": "Bad", "min_recency_score": "6"},
    )
    assert response.status_code == 200
    assert "A score is between 1 and 5." in errors(response)["min_recency_score"]
