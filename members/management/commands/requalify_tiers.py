"""manage.py requalify_tiers:
Requalify tiers: upgrades, downgrades after the grace, end of tiers set by staff."""

from members.nightly_command import NightlyJobCommand


class Command(NightlyJobCommand):
    help = (
        "Requalify tiers: upgrades, downgrades after the grace, end of tiers set by staff."
        " Recorded as a job run; --dry-run rolls back."
    )
    job = "requalify_tiers"
