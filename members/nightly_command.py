"""The shared body of the management commands that run the nightly member jobs by hand."""

import json
from datetime import datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from loyalty.models import Program

from . import jobs


class NightlyJobCommand(BaseCommand):
    # The (name, job) pairs the command runs, in order; a command of one job prints its
    # summary alone.
    chain: jobs.Chain = ()

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="compute and report what would be done, then roll it back (no email is sent)",
        )
        parser.add_argument(
            "--program",
            action="append",
            metavar="SLUG",
            help="only this program (repeatable); default: every active program",
        )
        parser.add_argument(
            "--at",
            metavar="ISO_DATETIME",
            help="run as if it were this moment (with its offset; not in the future); default: now",
        )
        parser.add_argument("--batch-size", type=int, default=None)
        parser.add_argument(
            "--queue-emails",
            action="store_true",
            help="queue the emails for the Celery workers instead of sending them here "
            "(what the scheduled run does)",
        )

    def handle(
        self,
        *args,
        dry_run=False,
        program=None,
        at=None,
        batch_size=None,
        queue_emails=False,
        **options,
    ):
        now = timezone.now()
        if at:
            try:
                moment = datetime.fromisoformat(at)
            except ValueError:
                raise CommandError(f"--at: not an ISO 8601 date and time: {at!r}") from None
            if timezone.is_naive(moment):
                raise CommandError("--at needs an offset, e.g. 2026-11-23T02:30:00+01:00")
            if moment > now:
                raise CommandError("--at cannot be in the future")
            now = moment
        programs = None
        if program:
            programs = list(Program.objects.filter(slug__in=program).order_by("pk"))
            missing = set(program) - {p.slug for p in programs}
            if missing:
                raise CommandError(f"unknown program(s): {', '.join(sorted(missing))}")
        if batch_size is not None and batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        try:
            result = jobs.run_chain(
                self.chain,
                now=now,
                programs=programs,
                dry_run=dry_run,
                batch_size=batch_size,
                queue_emails=queue_emails,
            )
        except jobs.JobAlreadyRunning as exc:
            raise CommandError(f"{exc} is already running") from None
        if dry_run:
            self.stdout.write("dry run: nothing was written")
        if len(self.chain) == 1:
            result = result[self.chain[0][0]]
        self.stdout.write(json.dumps(result, indent=2))
