"""Celery tasks of members: thin, idempotent, each calling the jobs module."""

from celery import shared_task

from . import jobs


@shared_task(name="members.tasks.run_nightly")
def run_nightly() -> dict:
    """The nightly chain: release pending points, expire points, requalify tiers, notify."""
    return jobs.run_nightly()


@shared_task(name="members.tasks.run_job")
def run_job(name: str, dry_run: bool = False) -> dict:
    return jobs.run_job(name, dry_run=dry_run)
