"""manage.py run_nightly:
Run the nightly member jobs in order: release, expire, requalify, notify."""

from members.nightly_command import NightlyJobCommand


class Command(NightlyJobCommand):
    help = (
        "Run the nightly member jobs in order: release, expire, requalify, notify."
        " Recorded as a job run; --dry-run rolls back."
    )
    job = None
