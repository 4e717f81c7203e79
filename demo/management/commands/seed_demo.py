"""manage.py seed_demo: the demo program, idempotently; --members/--months/--seed for large,
reproducible data sets (bulk inserts)."""

import time
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.utils import timezone

from analytics.services import recompute_kinds
from demo.accounts import DEMO_MEMBER, seed_member_account
from demo.campaign_history import generate_campaign_history
from demo.catalogue import generate_redemptions, seed_catalogue
from demo.history import generate_history
from demo.program import seed_campaigns, seed_program
from members import jobs
from members.models import Member
from members.tiers import requalify_tiers

DEMO_STAFF = ("demo", "demo-loyalty-2026")
# Up to this many members, seed_demo also computes the KPI snapshots (a few seconds); larger
# seeds (benchmarks) leave them to the nightly job or to `recompute_kpis --full`.
KPI_SEED_LIMIT = 20_000


class Command(BaseCommand):
    help = (
        "Create the demo program (a French retail chain) with its reward catalogue, members, "
        "purchase history and redemptions. Idempotent: the history is generated once, when the "
        "program has no member yet; the catalogue is brought up to date every time."
    )

    def add_arguments(self, parser):
        parser.add_argument("--members", type=int, default=300, help="members to generate")
        parser.add_argument("--months", type=int, default=12, help="months of history")
        parser.add_argument("--seed", type=int, default=42, help="random seed (reproducible)")
        parser.add_argument(
            "--staff-user",
            action="store_true",
            help="also create the demo staff login (always done when DEBUG is on)",
        )
        parser.add_argument(
            "--no-nightly",
            action="store_true",
            help="do not run last night's member jobs (release, expiry, requalification) on "
            "the generated history",
        )

    def handle(self, *args, members, months, seed, staff_user, no_nightly=False, **options):
        started = time.monotonic()
        launch = (timezone.now() - timedelta(days=round((months + 12) * 30.44))).date()
        program = seed_program(launch=launch)
        self.stdout.write(f"program {program.name} ({program.slug}) ready")
        campaigns = seed_campaigns(program, now=timezone.now())
        self.stdout.write(
            f"campaigns ready ({len(campaigns.campaigns)} campaigns, "
            f"{len(campaigns.segments)} segments)"
        )
        rewards = seed_catalogue(program)
        self.stdout.write(f"reward catalogue ready ({len(rewards)} rewards)")
        if Member.objects.filter(program=program).exists():
            self.stdout.write(
                f"history already present ({Member.objects.filter(program=program).count()} "
                "members): left as it is"
            )
        else:
            stats = generate_history(program=program, members=members, months=months, seed=seed)
            self.stdout.write(
                f"generated {stats.members} members, {stats.purchases} member purchases, "
                f"{stats.anonymous_purchases} anonymous purchases, {stats.entries} ledger rows"
            )
            made = generate_campaign_history(
                campaign=campaigns.past, segments=campaigns.segments, seed=seed
            )
            sizes = ", ".join(f"{name} {size}" for name, size in made.segments.items())
            self.stdout.write(
                f"campaign {campaigns.past.name}: {made.reached} members reached "
                f"({made.held_out} held out), {made.awards} awards, {made.extra_purchases} "
                f"extra purchases, {made.bonus_points} bonus points, {made.tier_upgrades} tier "
                f"upgrades; segments: {sizes}"
            )
            if not no_nightly:
                # The history ends now: bring it to where last night's jobs would have left it
                # (points past their expiry expired, tiers and their bounds requalified).
                for name, job in (
                    ("release_pending_points", jobs.release_pending_points),
                    ("expire_points", jobs.expire_points),
                    ("requalify_tiers", requalify_tiers),
                ):
                    summary = jobs.run_job(name, job, programs=[program])[program.slug]
                    done = ", ".join(f"{k} {v}" for k, v in summary.items() if k != "night")
                    self.stdout.write(f"{name}: {done}")
            redeemed = generate_redemptions(program, seed=seed, expire=not no_nightly)
            self.stdout.write(
                f"generated {redeemed.redeemed} redemptions: {redeemed.used} used, "
                f"{redeemed.cancelled} cancelled, {redeemed.expired} expired"
            )
            if not no_nightly and members <= KPI_SEED_LIMIT:
                # Last night's KPI snapshots too, so the dashboards have figures at once.
                summary = recompute_kinds(program=program, full=True)
                self.stdout.write(f"KPI snapshots computed ({summary['done']} periods)")
            elif not no_nightly:
                self.stdout.write(
                    "KPI snapshots left to the nightly job (or: manage.py recompute_kpis --full)"
                )
        if settings.DEBUG or staff_user:
            username, password = DEMO_STAFF
            user, created = get_user_model().objects.get_or_create(
                username=username,
                defaults={"is_staff": True, "is_superuser": True, "email": "demo@example.fr"},
            )
            if created:
                user.set_password(password)
                user.save(update_fields=["password"])
            self.stdout.write(f"staff login: {username} / {password}")
            member = seed_member_account(program)
            if member is not None:
                email, password = DEMO_MEMBER
                self.stdout.write(
                    f"member portal login: {email} / {password} (card {member.card_number})"
                )
        self.stdout.write(f"seed_demo done in {time.monotonic() - started:.1f} s")
