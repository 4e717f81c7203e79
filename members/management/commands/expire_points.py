"""manage.py expire_points: Expire points by each program's expiry policy."""

from members import jobs
from members.nightly_command import NightlyJobCommand


class Command(NightlyJobCommand):
    help = (
        "Expire points by each program's expiry policy."
        " Recorded as a job run; --dry-run rolls back."
    )
    chain = (("expire_points", jobs.expire_points),)
