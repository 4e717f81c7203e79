"""Celery tasks that run the nightly chain. Their names are those the beat schedule and queued
messages use."""

from celery import shared_task

from . import nightly


@shared_task(name="members.tasks.run_nightly")
def run_nightly() -> dict:
    """The nightly chain (`nightly.NIGHTLY_CHAIN`). The emails go out through
    `send_notifications` tasks, in parallel on the workers."""
    return nightly.run_nightly(queue_emails=True)


@shared_task(name="members.tasks.run_job")
def run_job(name: str, dry_run: bool = False) -> dict:
    return nightly.run_job(name, dry_run=dry_run)
