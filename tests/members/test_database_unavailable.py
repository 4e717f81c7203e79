"""While PostgreSQL restarts or cannot be reached, the API answers 503 with Retry-After as a
problem (which a till retries), pages answer a short 503 page, and the retry credits once."""

from datetime import timedelta

import psycopg
import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from members.ledger import find_mismatches
from members.models import Member, Purchase
from tests.members.helpers import assert_problem

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

URL = "/api/v1/purchases/"


def purchase(member, receipt_id="R-DB-1"):
    return {
        "receipt_id": receipt_id,
        "card_number": member.card_number,
        "amount": "42.50",
        "currency": "EUR",
        "occurred_at": (timezone.now() - timedelta(hours=1)).isoformat(),
    }


def terminate_this_connection():
    """End this thread's server process from another session, as a restart of the server
    does; the connection object does not know until its next query."""
    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    params = connection.get_connection_params()
    with psycopg.connect(
        host=params.get("host"),
        port=params.get("port"),
        user=params.get("user"),
        dbname="postgres",
        autocommit=True,
    ) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])


def test_a_connection_dropped_by_a_restart_is_a_503_and_the_retry_credits_once(api, member):
    body = purchase(member)
    terminate_this_connection()

    response = api.post(URL, body, format="json")

    assert_problem(response, 503, "unavailable")
    assert response["Retry-After"] == "2"
    connection.close()  # what Django does at the end of a request on an unusable connection
    retried = api.post(URL, body, format="json")
    assert retried.status_code in (200, 201), retried.content
    replayed = api.post(URL, body, format="json")
    assert replayed.status_code == 200
    assert Purchase.objects.filter(receipt_id="R-DB-1").count() == 1
    member = Member.objects.get(pk=member.pk)
    assert member.points_pending == retried.json()["points_earned"]
    assert find_mismatches() == []


def test_an_unreachable_database_is_a_503_for_tills_and_for_pages(api, member, program):
    port = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = "1"  # nothing listens there
    try:
        response = api.post(URL, purchase(member, "R-DB-2"), format="json")
        page = Client(raise_request_exception=False).get(f"/portal/{program.slug}/")
    finally:
        connection.close()
        connection.settings_dict["PORT"] = port

    problem = assert_problem(response, 503, "unavailable")
    assert problem["instance"] == URL
    assert response["Retry-After"] == "2"
    assert page.status_code == 503
    assert page["Retry-After"] == "2"
    assert page["Content-Type"].startswith("text/html")
    assert not Purchase.objects.filter(receipt_id="R-DB-2").exists()
