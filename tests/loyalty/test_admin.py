"""Staff admin of the program core: every page loads, the Program page shows its inlines, an API
key made in the admin is shown once and stored hashed, keys can be revoked in bulk, and the
Program changelist does not run one query per program."""

import re
from datetime import date
from decimal import Decimal

import pytest
from django.urls import reverse

from loyalty import services
from loyalty.models import (
    EarningRule,
    JobRun,
    Program,
    ProgramCost,
    Store,
    StoreAPIKey,
    Tier,
)
from tests.factories import (
    EarningRuleFactory,
    ProgramCostFactory,
    ProgramFactory,
    StoreFactory,
    TierFactory,
)

pytestmark = pytest.mark.django_db

KEY_MESSAGE = re.compile(r"The API key for .* is: (\S+)\. Please store it")


@pytest.fixture
def rows():
    program = ProgramFactory(name="Maison Test", slug="maison-test")
    store = StoreFactory(program=program, name="Paris Rivoli Test", slug="paris-rivoli")
    tier = TierFactory(program=program, name="Argent Test", rank=1, qualify_threshold=300)
    rule = EarningRuleFactory(program=program, name="Beauty double test", store=store)
    cost = ProgramCostFactory(program=program, label="Hosting test", starts_on=date(2026, 1, 1))
    api_key, _ = services.create_store_api_key(store=store, name="Till 1")
    run = services.record_heartbeat()
    return {
        Program: program,
        Store: store,
        StoreAPIKey: api_key,
        Tier: tier,
        EarningRule: rule,
        ProgramCost: cost,
        JobRun: run,
    }


MODELS = [Program, Store, StoreAPIKey, Tier, EarningRule, ProgramCost, JobRun]


def url(model, view, *args):
    return reverse(f"admin:loyalty_{model._meta.model_name}_{view}", args=args)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_changelist_loads(admin_client, rows, model):
    response = admin_client.get(url(model, "changelist"))
    assert response.status_code == 200
    assert response.context["cl"].result_count == model.objects.count() >= 1


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_change_page_loads(admin_client, rows, model):
    response = admin_client.get(url(model, "change", rows[model].pk))
    assert response.status_code == 200


@pytest.mark.parametrize("model", [m for m in MODELS if m is not JobRun], ids=lambda m: m.__name__)
def test_add_page_loads(admin_client, rows, model):
    response = admin_client.get(url(model, "add"))
    assert response.status_code == 200


def test_job_runs_cannot_be_added_or_changed(admin_client, rows):
    assert admin_client.get(url(JobRun, "add")).status_code == 403
    run = rows[JobRun]
    response = admin_client.post(url(JobRun, "change", run.pk), {"name": "tampered"})
    assert response.status_code == 403
    run.refresh_from_db()
    assert run.name == services.HEARTBEAT_JOB


def test_program_change_page_shows_inlines(admin_client, rows):
    response = admin_client.get(url(Program, "change", rows[Program].pk))
    content = response.content.decode()
    for text in ["Paris Rivoli Test", "Argent Test", "Beauty double test", "Hosting test"]:
        assert text in content


def test_program_can_be_added_with_inlines_empty(admin_client):
    data = {
        "name": "New program",
        "slug": "new-program",
        "status": "active",
        "currency": "EUR",
        "time_zone": "Europe/Paris",
        "points_name": "points",
        "base_earn_rate": "1",
        "rounding": "floor",
        "return_window_days": "30",
        "backdating_days": "30",
        "expiry_policy": "none",
        "expiry_months": "",
        "tier_metric": "spend",
        "tier_window": "rolling",
        "tier_window_months": "12",
        "tier_grace_periods": "1",
        "tier_downgrade_policy": "one_step",
        "gross_margin_rate": "0.35",
        "point_cost_amount": "0.01",
    }
    for prefix in ["stores", "tiers", "earning_rules", "costs"]:
        data.update(
            {
                f"{prefix}-TOTAL_FORMS": "0",
                f"{prefix}-INITIAL_FORMS": "0",
                f"{prefix}-MIN_NUM_FORMS": "0",
                f"{prefix}-MAX_NUM_FORMS": "1000",
            }
        )
    response = admin_client.post(url(Program, "add"), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Program.objects.get(slug="new-program").base_earn_rate == Decimal("1")


def test_api_key_created_in_admin_is_shown_once_and_stored_hashed(admin_client, rows):
    store = rows[Store]
    response = admin_client.post(
        url(StoreAPIKey, "add"), {"name": "Till 2", "store": store.pk}, follow=True
    )
    assert response.status_code == 200
    texts = [str(m) for m in response.context["messages"]]
    keys = [m.group(1) for text in texts if (m := KEY_MESSAGE.search(text))]
    assert len(keys) == 1, texts
    key = keys[0]

    api_key = StoreAPIKey.objects.get(name="Till 2")
    assert api_key.store == store
    assert StoreAPIKey.objects.get_from_key(key) == api_key
    assert StoreAPIKey.objects.is_valid(key)
    assert api_key.hashed_key != key
    secret = key.partition(".")[2]
    assert secret
    row = StoreAPIKey.objects.filter(pk=api_key.pk).values().get()
    for column, value in row.items():
        assert key not in str(value), column
        assert secret not in str(value), column

    # Shown once: the change page and the list do not show it again.
    for page in [url(StoreAPIKey, "change", api_key.pk), url(StoreAPIKey, "changelist")]:
        content = admin_client.get(page).content.decode()
        assert secret not in content


def test_revoke_action_revokes_selected_keys(admin_client, rows):
    store = rows[Store]
    kept, kept_key = services.create_store_api_key(store=store, name="Kept")
    revoked_key = StoreAPIKey.objects.get(name="Till 1")
    response = admin_client.post(
        url(StoreAPIKey, "changelist"),
        {"action": "revoke_keys", "_selected_action": [revoked_key.pk]},
        follow=True,
        headers={"accept-language": "en"},
    )
    assert response.status_code == 200
    assert "Keys revoked." in [str(m) for m in response.context["messages"]]
    revoked_key.refresh_from_db()
    kept.refresh_from_db()
    assert revoked_key.revoked
    assert not kept.revoked
    assert StoreAPIKey.objects.is_valid(kept_key)


def test_program_changelist_query_count_does_not_grow_with_programs(
    admin_client, django_assert_max_num_queries
):
    for _ in range(5):
        program = ProgramFactory()
        StoreFactory.create_batch(2, program=program)
    # The page takes 6 queries (session, user, counts, the page); one query per program's
    # store count would make it 11, so the bound leaves slack but catches an N+1.
    with django_assert_max_num_queries(9):
        response = admin_client.get(url(Program, "changelist"))
    assert response.status_code == 200
    assert response.context["cl"].result_count == 5
    assert all(p._store_count == 2 for p in response.context["cl"].result_list)


def test_job_runs_page_shows_the_schedule(admin_client, rows):
    page = admin_client.get(url(JobRun, "changelist"), HTTP_ACCEPT_LANGUAGE="en")
    assert page.status_code == 200
    assert "members.tasks.run_nightly" in page.text
    assert "02:30" in page.text
    assert "loyalty.tasks.record_heartbeat" in page.text
