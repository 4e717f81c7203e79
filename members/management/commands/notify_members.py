"""manage.py notify_members: Send the points-expiring and tier-changed emails."""

from members import jobs
from members.nightly_command import NightlyJobCommand


class Command(NightlyJobCommand):
    help = (
        "Send the points-expiring and tier-changed emails."
        " Recorded as a job run; --dry-run rolls back."
    )
    chain = (("notify_members", jobs.notify_members),)
