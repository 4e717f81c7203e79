"""manage.py run_nightly: run the nightly chain (config/nightly.py) in order."""

from config.nightly import NIGHTLY_CHAIN
from members.nightly_command import NightlyJobCommand


class Command(NightlyJobCommand):
    help = (
        "Run the nightly jobs in order: release, expire vouchers, expire points, requalify "
        "tiers, refresh segments, lifecycle bonuses, recompute KPIs, notify."
        " Recorded as a job run; --dry-run rolls back."
    )
    chain = NIGHTLY_CHAIN
