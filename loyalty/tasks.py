"""Celery tasks of the program core: thin, idempotent, each calling one service."""

from celery import shared_task

from . import services


@shared_task(name="loyalty.tasks.record_heartbeat")
def record_heartbeat() -> int:
    """Every HEARTBEAT_SECONDS. Like every job run, the heartbeat's first marks abandoned the
    runs whose lease has expired (loyalty.jobs), so staff see them even when no job starts."""
    return services.record_heartbeat().pk


@shared_task(name="loyalty.tasks.prune_idempotency_records")
def prune_idempotency_records() -> int:
    return services.prune_idempotency_records()
