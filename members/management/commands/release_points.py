"""manage.py release_points: Release pending points whose return window has closed."""

from members import jobs
from members.nightly_command import NightlyJobCommand


class Command(NightlyJobCommand):
    help = (
        "Release pending points whose return window has closed."
        " Recorded as a job run; --dry-run rolls back."
    )
    chain = (("release_pending_points", jobs.release_pending_points),)
