"""Celery tasks of members: thin, idempotent. The tasks that run the nightly chain are in
config/tasks.py, where the chain is written."""

from datetime import datetime

from celery import shared_task

from loyalty.models import Program

from . import notifications


@shared_task(name="members.tasks.send_notifications")
def send_notifications(program_id: int, ids: list[int], now: str) -> dict:
    """Send claimed notifications (a batch queued by the nightly job). Safe to run twice: only
    notifications not yet sent are sent."""
    program = Program.objects.get(pk=program_id)
    sent, failed = notifications.send_pending(program, now=datetime.fromisoformat(now), ids=ids)
    return {"sent": sent, "failed": failed}
