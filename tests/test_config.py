"""The composition root (config/): the nightly chain as one ordered list."""

from config.nightly import NIGHTLY_CHAIN, NIGHTLY_ORDER


def test_the_nightly_chain_runs_each_job_once_in_its_order():
    assert NIGHTLY_ORDER == (
        "release_pending_points",
        "expire_vouchers",
        "expire_points",
        "requalify_tiers",
        "refresh_segments",
        "grant_lifecycle_bonuses",
        "recompute_kpis",
        "notify_members",
    )
    assert len({job for _name, job in NIGHTLY_CHAIN}) == len(NIGHTLY_CHAIN)
