"""manage.py requalify_tiers:
Requalify tiers: upgrades, downgrades after the grace, end of tiers set by staff."""

from members.nightly_command import NightlyJobCommand
from members.tiers import requalify_tiers


class Command(NightlyJobCommand):
    help = (
        "Requalify tiers: upgrades, downgrades after the grace, end of tiers set by staff."
        " Recorded as a job run; --dry-run rolls back."
    )
    chain = (("requalify_tiers", requalify_tiers),)
