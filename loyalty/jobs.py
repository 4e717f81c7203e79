"""Recording of job runs, so that staff can see what the scheduled jobs did and when."""

import traceback
from contextlib import contextmanager

from django.utils import timezone

from .models import JobRun


@contextmanager
def record_job_run(name: str, *, dry_run: bool = False, user=None):
    """Record one run of job `name`: a JobRun row opened now and closed as succeeded or failed.

    The body may fill `run.summary`; an exception is recorded with its traceback and re-raised.
    The row is written outside the job's own transactions so that a failure stays visible.
    """
    run = JobRun.objects.create(
        name=name, started_at=timezone.now(), is_dry_run=dry_run, triggered_by=user
    )
    try:
        yield run
    except BaseException:
        JobRun.objects.filter(pk=run.pk).update(
            status=JobRun.Status.FAILED,
            finished_at=timezone.now(),
            summary=run.summary,
            error=traceback.format_exc(limit=20),
        )
        raise
    JobRun.objects.filter(pk=run.pk).update(
        status=JobRun.Status.SUCCEEDED, finished_at=timezone.now(), summary=run.summary
    )
    run.status = JobRun.Status.SUCCEEDED
