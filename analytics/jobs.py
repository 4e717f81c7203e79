"""The KPI recompute as a step of the members' nightly chain (registered in apps.py, after the
tier requalification and before the emails): incremental, for every period kind."""

from members.batches import Context

from .services import ALL_KINDS, recompute_kinds


def recompute_kpis(ctx: Context) -> dict:
    """Recompute the periods of the program that changed since the last run, as of the night,
    for every period kind; the summary by period kind (the chain records it in its JobRun)."""
    return recompute_kinds(
        program=ctx.program, period_kinds=ALL_KINDS, now=ctx.now, dry_run=ctx.dry_run, record=False
    )["kinds"]
