"""Business actions on the program core. Every write that matters goes through one of these."""

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .jobs import record_job_run
from .models import IdempotencyRecord, JobRun, Store, StoreAPIKey

HEARTBEAT_JOB = "scheduler-heartbeat"
HEARTBEAT_KEEP = timedelta(days=7)


def create_store_api_key(*, store: Store, name: str) -> tuple[StoreAPIKey, str]:
    """Create a POS API key for a store. The key is returned once; only its hash is stored."""
    with transaction.atomic(durable=True):
        api_key, key = StoreAPIKey.objects.create_key(name=name, store=store)
    return api_key, key


def revoke_store_api_key(*, api_key: StoreAPIKey) -> None:
    """Revoke a POS API key; requests made with it are refused from now on."""
    with transaction.atomic(durable=True):
        StoreAPIKey.objects.filter(pk=api_key.pk).update(revoked=True)


def record_heartbeat() -> JobRun:
    """Record that beat and a worker are alive, and prune heartbeats older than a week."""
    with record_job_run(HEARTBEAT_JOB) as run:
        pruned, _ = JobRun.objects.filter(
            name=HEARTBEAT_JOB, started_at__lt=timezone.now() - HEARTBEAT_KEEP
        ).delete()
        run.summary = {"pruned_heartbeats": pruned}
    return run


def prune_idempotency_records() -> int:
    """Forget Idempotency-Key answers older than IDEMPOTENCY_KEEP_HOURS (at least 24 hours)."""
    hours = max(24, settings.IDEMPOTENCY_KEEP_HOURS)
    with record_job_run("prune-idempotency-records") as run:
        deleted, _ = IdempotencyRecord.objects.filter(
            created_at__lt=timezone.now() - timedelta(hours=hours)
        ).delete()
        run.summary = {"deleted": deleted, "kept_hours": hours}
    return deleted
