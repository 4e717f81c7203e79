"""Recompute the KPI snapshots: incremental by default (what changed since the last run),
in full with --full."""

import json

from django.core.management.base import BaseCommand, CommandError

from analytics.models import PeriodKind
from analytics.services import ALL_KINDS, recompute_programs
from loyalty.models import Program


class Command(BaseCommand):
    help = "Recompute the KPI snapshots (incremental unless --full)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--program",
            action="append",
            metavar="SLUG",
            help="only this program (repeatable); default: every active program",
        )
        parser.add_argument(
            "--full", action="store_true", help="every period since the program's first activity"
        )
        parser.add_argument(
            "--period",
            action="append",
            choices=PeriodKind.values,
            help="period kind (repeatable); default: month, week and quarter",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="report the periods, compute nothing"
        )

    def handle(self, *args, **options):
        programs = None
        if options["program"]:
            slugs = options["program"]
            programs = list(Program.objects.filter(slug__in=slugs).order_by("pk"))
            missing = sorted(set(slugs) - {p.slug for p in programs})
            if missing:
                raise CommandError(f"Unknown program: {', '.join(missing)}")
        summary = recompute_programs(
            programs=programs,
            period_kinds=options["period"] or ALL_KINDS,
            full=options["full"],
            dry_run=options["dry_run"],
        )
        self.stdout.write(json.dumps(summary, indent=2))
