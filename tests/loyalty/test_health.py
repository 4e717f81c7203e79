"""/healthz: what load balancers and container health checks ask. Real database, real broker.

On SQLite without REDIS_URL the broker is kombu's filesystem transport; with REDIS_URL it is
Redis. The failure case points the Celery app at a port where nothing listens.
"""

import pytest

from config.celery import app as celery_app
from loyalty import services

UNREACHABLE_BROKER = "redis://127.0.0.1:1/0"


@pytest.fixture
def unreachable_broker():
    saved = celery_app.conf.broker_url
    celery_app.conf.broker_url = UNREACHABLE_BROKER
    try:
        yield
    finally:
        celery_app.conf.broker_url = saved


def assert_not_cacheable(response):
    cache_control = response["Cache-Control"]
    assert "no-cache" in cache_control
    assert "max-age=0" in cache_control


@pytest.mark.django_db
def test_healthy_when_database_and_broker_answer(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert {key: body[key] for key in ("status", "database", "broker")} == {
        "status": "ok",
        "database": "ok",
        "broker": "ok",
    }
    assert_not_cacheable(response)


@pytest.mark.django_db
def test_reports_the_last_scheduler_heartbeat(client):
    assert client.get("/healthz").json()["scheduler_last_heartbeat"] is None

    run = services.record_heartbeat()
    run.refresh_from_db()

    body = client.get("/healthz").json()
    assert body["scheduler_last_heartbeat"] == run.finished_at.isoformat()


@pytest.mark.django_db
@pytest.mark.usefixtures("unreachable_broker")
def test_unavailable_when_the_broker_does_not_answer(client):
    response = client.get("/healthz")

    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["database"] == "ok"
    assert body["broker"] != "ok"
    assert body["broker"].startswith("error: ")
    assert_not_cacheable(response)


@pytest.mark.django_db
def test_only_answers_get(client):
    assert client.post("/healthz").status_code == 405
