"""Recording of job runs, so that staff can see what the scheduled jobs did and when.

A running JobRun holds a lease of `JOB_LEASE_SECONDS`, renewed while the job runs: by a thread
every quarter of the lease, and each time the job saves its progress (`save_progress`). A run
whose lease has expired while it is still marked running lost its worker (killed, out of
memory, a machine gone): every run that starts, the scheduler heartbeat's among them, first
marks such runs abandoned. The summary of an abandoned run says what it had done; the next run
of the job carries on from there (the jobs are idempotent).

Leases are compared with each worker's clock: the machines' clocks must agree to well within
a lease (NTP does).
"""

import logging
import os
import socket
import threading
import traceback
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from .models import JobRun

logger = logging.getLogger(__name__)

# A run marked abandoned whose worker renews its lease after all is running again.
_RENEWABLE = (JobRun.Status.RUNNING, JobRun.Status.ABANDONED)
# How long the end of a run waits for the lease thread to finish a renewal in flight (on
# SQLite, one waiting for the write lock).
_STOP_WAIT_SECONDS = 5


def _lease_until(now: datetime) -> datetime:
    return now + timedelta(seconds=settings.JOB_LEASE_SECONDS)


def abandon_expired_runs(*, now: datetime | None = None) -> int:
    """Mark abandoned the runs still marked running whose lease expired before `now`; returns
    how many. A run whose worker renews its lease is never among them."""
    now = now or timezone.now()
    expired = JobRun.objects.expired(now)
    found = list(expired.values_list("pk", "name", "worker_host", "worker_pid", "heartbeat_at"))
    if not found:
        return 0
    # The condition is checked again by the UPDATE: a renewal in between keeps its run.
    count = expired.filter(pk__in=[row[0] for row in found]).update(status=JobRun.Status.ABANDONED)
    for pk, name, host, pid, heartbeat_at in found:
        logger.warning(
            "job run %s (%s) abandoned: its worker %s pid %s last renewed its lease at %s",
            pk,
            name,
            host,
            pid,
            heartbeat_at,
        )
    return count


def start_run(name: str, *, dry_run: bool = False, user=None) -> JobRun:
    """Open a running JobRun of job `name`, leased to this process from now, after marking
    abandoned the runs (of any job) whose lease has expired."""
    now = timezone.now()
    abandon_expired_runs(now=now)
    return JobRun.objects.create(
        name=name,
        started_at=now,
        is_dry_run=dry_run,
        triggered_by=user,
        heartbeat_at=now,
        lease_expires_at=_lease_until(now),
        worker_host=socket.gethostname()[:255],
        worker_pid=os.getpid(),
    )


def _renew(pk: int, **fields) -> int:
    now = timezone.now()
    return JobRun.objects.filter(pk=pk, status__in=_RENEWABLE).update(
        status=JobRun.Status.RUNNING, heartbeat_at=now, lease_expires_at=_lease_until(now), **fields
    )


def save_progress(run: JobRun) -> None:
    """Write `run.summary` as it stands and renew the run's lease. Call it where the work the
    summary counts is committed, so that an abandoned run shows what it had done."""
    if run.pk:
        _renew(run.pk, summary=run.summary)


class _LeaseKeeper(threading.Thread):
    """Renews a run's lease every quarter of JOB_LEASE_SECONDS, on the thread's own database
    connection, until `stop`: a step of a job that saves no progress for longer than the
    lease (a long read, sending emails) keeps its run alive."""

    def __init__(self, pk: int):
        super().__init__(name=f"job-run-lease-{pk}", daemon=True)
        self.pk = pk
        self.stopping = threading.Event()

    def run(self):
        try:
            while not self.stopping.wait(settings.JOB_LEASE_SECONDS / 4):
                try:
                    _renew(self.pk)
                except Exception:
                    # A SQLite file locked for longer than its timeout, a lost connection:
                    # the next turn tries again on a new connection, well within the lease.
                    logger.warning("could not renew the lease of run %s", self.pk, exc_info=True)
                    connection.close()
        finally:
            connection.close()  # the thread's own connection

    def stop(self):
        self.stopping.set()
        self.join(_STOP_WAIT_SECONDS)


def _thread_can_renew() -> bool:
    """Whether a thread's own connection can renew the lease: it sees the run only once the run
    is committed (not inside a caller's transaction, such as a test's), and only on a
    database other processes share (an in-memory SQLite database is private to its process, and
    its shared-cache table locks would fail the job's own writes)."""
    if connection.in_atomic_block:
        return False
    return not (connection.vendor == "sqlite" and connection.is_in_memory_db())


def _finish(run: JobRun, status: str, error: str = "") -> None:
    JobRun.objects.filter(pk=run.pk).update(
        status=status, finished_at=timezone.now(), summary=run.summary, error=error
    )
    run.status = status


@contextmanager
def record_job_run(name: str, *, dry_run: bool = False, user=None):
    """Record one run of job `name`: a JobRun row opened now and closed as succeeded or failed,
    holding a lease renewed while the body runs (abandoned if the process dies).

    The body may fill `run.summary` and save it as it goes with `save_progress`; an exception
    is recorded with its traceback and re-raised. The row is written outside the job's own
    transactions so that a failure stays visible.
    """
    run = start_run(name, dry_run=dry_run, user=user)
    keeper = _LeaseKeeper(run.pk) if _thread_can_renew() else None
    if keeper:
        keeper.start()
    status, error = JobRun.Status.SUCCEEDED, ""
    try:
        yield run
    except BaseException:
        status, error = JobRun.Status.FAILED, traceback.format_exc(limit=20)
        raise
    finally:
        if keeper:
            keeper.stop()
        _finish(run, status, error)
