"""HTML and health views of the program core."""

from django.db import connection
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from django.views.generic import TemplateView

from .models import JobRun
from .services import HEARTBEAT_JOB

BROKER_TIMEOUT_SECONDS = 2


def _database_status() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any failure means "not answering"
        return f"error: {exc.__class__.__name__}"
    return "ok"


def _broker_status(celery_app) -> str:
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_SECONDS)
    except Exception as exc:
        return f"error: {exc.__class__.__name__}"
    return "ok"


def _last_heartbeat():
    try:
        return (
            JobRun.objects.filter(name=HEARTBEAT_JOB, status=JobRun.Status.SUCCEEDED)
            .values_list("finished_at", flat=True)
            .first()
        )
    except Exception:
        return None


@never_cache
@require_GET
def healthz(request, celery_app):
    """200 when the database and the broker both answer, 503 otherwise; JSON either way.
    `celery_app` (the project's Celery application) is passed in by the URL configuration."""
    database = _database_status()
    broker = _broker_status(celery_app)
    healthy = database == "ok" and broker == "ok"
    heartbeat = _last_heartbeat() if database == "ok" else None
    body = {
        "status": "ok" if healthy else "unavailable",
        "database": database,
        "broker": broker,
        "scheduler_last_heartbeat": heartbeat.isoformat() if heartbeat else None,
        "time": timezone.now().isoformat(),
    }
    return JsonResponse(body, status=200 if healthy else 503)


class HomeView(TemplateView):
    template_name = "home.html"
