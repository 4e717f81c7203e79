"""The nightly chain: every nightly job, in the order it runs, per program and on the
program's local date. `members.jobs` runs them (batches, job runs, one run of a job at a
time); the Celery task and the `run_nightly` command take the chain from here."""

from analytics.jobs import recompute_kpis
from members import jobs
from members.campaigns.lifecycle import grant_lifecycle_bonuses
from members.campaigns.segments import refresh_segments
from members.tiers import requalify_tiers
from rewards.jobs import expire_vouchers

NIGHTLY_CHAIN: jobs.Chain = (
    ("release_pending_points", jobs.release_pending_points),
    ("expire_vouchers", expire_vouchers),
    ("expire_points", jobs.expire_points),
    ("requalify_tiers", requalify_tiers),
    # Segments after the tiers (a segment may select a tier), lifecycle bonuses after the
    # segments (a campaign may target one).
    ("refresh_segments", refresh_segments),
    ("grant_lifecycle_bonuses", grant_lifecycle_bonuses),
    # Last before the emails: the night's releases, expiries, tier changes and lifecycle
    # bonuses are in the figures staff read in the morning.
    ("recompute_kpis", recompute_kpis),
    ("notify_members", jobs.notify_members),
)
NIGHTLY_ORDER = tuple(name for name, _job in NIGHTLY_CHAIN)


def run_nightly(**options) -> dict:
    """The whole chain, in order (`members.jobs.run_chain`); returns the summaries by job."""
    return jobs.run_chain(NIGHTLY_CHAIN, **options)


def run_job(name: str, **options) -> dict:
    """One job of the chain, by name (`members.jobs.run_job`); KeyError for an unknown name."""
    return jobs.run_job(name, dict(NIGHTLY_CHAIN)[name], **options)
