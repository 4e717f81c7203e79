"""What a nightly member job is given and how it works in batches: the `Context` of a run,
one transaction per batch (`batch_transaction`), and the two SQL helpers the batches share.
The chain that runs the jobs is `members.jobs`."""

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime

from django.db import connection, transaction

from loyalty.models import Program


@dataclass
class Context:
    program: Program
    now: datetime
    night: date
    dry_run: bool
    batch_size: int
    # Hand the emails to worker tasks (in batches) instead of sending them in this job: the
    # chain then ends without waiting for the mail server, and several workers can send.
    queue_emails: bool = False
    # Called after each batch with a copy of the summary the job tracks (`track`), or None.
    on_batch: Callable[[dict | None], None] | None = None
    progress: dict | None = field(default=None, repr=False)

    def track(self, summary: dict) -> dict:
        """The job's summary, whose counts are reported as each batch commits."""
        self.progress = summary
        return summary


@contextmanager
def batch_transaction(ctx: Context):
    """One batch: a transaction, rolled back at the end on a dry run. Once it has ended, the
    job's tracked summary is reported (run_job writes it to the JobRun and renews its lease)."""
    with transaction.atomic():
        yield
        if ctx.dry_run:
            transaction.set_rollback(True)
    if ctx.on_batch is not None:
        ctx.on_batch(None if ctx.progress is None else dict(ctx.progress))


def fetch(sql: str, params) -> list[tuple]:
    """The rows of one query."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def ids_sql(ids) -> str:
    """Ids as a SQL list, each forced to an integer (safe to inline)."""
    return ", ".join(str(int(i)) for i in ids)
