"""manage.py release_points: Release pending points whose return window has closed."""

from members.nightly_command import NightlyJobCommand


class Command(NightlyJobCommand):
    help = (
        "Release pending points whose return window has closed."
        " Recorded as a job run; --dry-run rolls back."
    )
    job = "release_pending_points"
