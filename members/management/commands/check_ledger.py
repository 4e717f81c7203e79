"""manage.py check_ledger: prove cached balances equal the ledger; exit 1 on any mismatch."""

from django.core.management.base import BaseCommand, CommandError

from members.ledger import find_mismatches


class Command(BaseCommand):
    help = "Check the points ledger invariants with set-based SQL. Exits non-zero on a mismatch."

    def add_arguments(self, parser):
        parser.add_argument("--limit", type=int, default=100, help="report at most this many")

    def handle(self, *args, limit=100, **options):
        problems = find_mismatches(limit=limit)
        if problems:
            for line in problems:
                self.stderr.write(line)
            raise CommandError(f"{len(problems)} ledger invariant(s) broken")
        self.stdout.write(self.style.SUCCESS("ledger consistent: cached balances = ledger sums"))
