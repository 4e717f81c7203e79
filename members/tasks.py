"""Celery tasks of members: thin, idempotent, each calling the jobs module."""

from datetime import datetime

from celery import shared_task

from loyalty.models import Program

from . import jobs, notifications


@shared_task(name="members.tasks.run_nightly")
def run_nightly() -> dict:
    """The nightly chain, in the order of `jobs.NIGHTLY_ORDER`: release pending points,
    expire vouchers, expire points, requalify tiers, refresh segments, grant lifecycle
    bonuses, recompute the KPIs, notify members (the jobs of rewards and analytics are added
    by their apps). The emails go out through `send_notifications` tasks, in parallel on the
    workers."""
    return jobs.run_nightly(queue_emails=True)


@shared_task(name="members.tasks.send_notifications")
def send_notifications(program_id: int, ids: list[int], now: str) -> dict:
    """Send claimed notifications (a batch queued by the nightly job). Safe to run twice: only
    notifications not yet sent are sent."""
    program = Program.objects.get(pk=program_id)
    sent, failed = notifications.send_pending(program, now=datetime.fromisoformat(now), ids=ids)
    return {"sent": sent, "failed": failed}


@shared_task(name="members.tasks.run_job")
def run_job(name: str, dry_run: bool = False) -> dict:
    return jobs.run_job(name, dry_run=dry_run)
