"""The nightly member jobs (release pending points, expire points, notify; requalify tiers is in
`members.tiers.job`) and what runs a job or a chain of jobs (`run_job`, `run_chain`). The
nightly chain itself, with the jobs of the apps to the right of members, is config/nightly.py.

Each job works per program, on the program's local date (the *night*), in batches of members
selected in SQL: a batch is one transaction that locks its members (in id order), recomputes
what to do under the lock, and writes it with bulk statements. So:

- set-based: no Python loop loads every member; the work of a batch is computed in SQL;
- idempotent: what a job does is a function of the ledger as it stands (a purchase not yet
  released, points above what FIFO lets a member keep, a review date that has passed), so a
  second run the same night finds nothing left to do, and a run killed half way leaves whole
  batches done or not done, which the next run completes;
- observable: `run_job` records each run (start, end, counts, error) as a JobRun, with the
  counts of the batches committed so far written after each batch.

`night` is the local date the job runs for; by default today in the program's time zone.
"""

import uuid
import zlib
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from datetime import date, datetime, timedelta

from django.db import connection
from django.utils import timezone

from loyalty.jobs import record_job_run, save_progress
from loyalty.models import Program
from loyalty.sql import dt, parse_dt

from . import ledger, notifications
from .batches import Context, batch_transaction, fetch, ids_sql
from .ledger import Bucket, BulkPosting, Kind
from .models import Member, PointsEntry, Purchase
from .selectors import CREDITS_SINCE_SQL, EXPIRY_WARNING_DAYS, expiry_cutoff
from .tiers import job as tier_job

BATCH_SIZE = 5000

M = Member._meta.db_table
P = Purchase._meta.db_table
E = PointsEntry._meta.db_table


class JobAlreadyRunning(Exception):
    pass


def _local_date(program: Program, now: datetime) -> date:
    return timezone.localtime(now, program.tzinfo).date()


# Release of pending points ----------------------------------------------------------------------

_DUE_MEMBERS_SQL = f"""
SELECT DISTINCT member_id FROM {P}
WHERE program_id = %s AND released_at IS NULL AND member_id IS NOT NULL
  AND release_at <= %s AND member_id > %s
ORDER BY member_id LIMIT %s
"""  # noqa: S608  # nosec B608  # table name from model metadata; values are parameters


def release_pending_points(ctx: Context) -> dict:
    """Move the points of purchases whose return window has closed from pending to available:
    per purchase, one balanced release transaction (pending -x, available +x), where x is what
    is still pending (earned minus returned during the window)."""
    program, now = ctx.program, ctx.now
    summary = ctx.track({"purchases": 0, "members": 0, "points": 0, "batches": 0})
    last = 0
    while True:
        with batch_transaction(ctx):
            ids = [
                r[0] for r in fetch(_DUE_MEMBERS_SQL, [program.pk, dt(now), last, ctx.batch_size])
            ]
            if not ids:
                break
            last = ids[-1]
            ledger.lock_members(ids)
            # Under the locks, no return can move these purchases' points any more.
            due = fetch(
                "SELECT id, member_id, points_earned - points_reversed, release_at, store_id, "  # noqa: S608  # nosec B608  # table name from model metadata; ids inlined by int(); values are parameters
                f"occurred_at FROM {P} WHERE member_id IN ({ids_sql(ids)}) "
                "AND released_at IS NULL AND release_at <= %s ORDER BY id",
                [dt(now)],
            )
            postings = []
            for purchase_id, member_id, points, release_at, store_id, occurred_at in due:
                if points <= 0:
                    continue
                txn = uuid.uuid4()
                for bucket, signed in ((Bucket.PENDING, -points), (Bucket.AVAILABLE, points)):
                    postings.append(
                        BulkPosting(
                            member_id=member_id,
                            kind=Kind.RELEASE,
                            bucket=bucket,
                            points=signed,
                            txn=txn,
                            effective_at=parse_dt(release_at),
                            earned_at=parse_dt(occurred_at),
                            purchase_id=purchase_id,
                            store_id=store_id,
                        )
                    )
                summary["points"] += points
            ledger.post_many(program.pk, postings, now=now)
            Purchase.objects.filter(pk__in=[row[0] for row in due]).update(released_at=now)
            summary["purchases"] += len(due)
            summary["members"] += len({row[1] for row in due})
            summary["batches"] += 1
    return summary


# Expiry -----------------------------------------------------------------------------------------


# Credits since the cutoff, summed by member, for a batch: the id range lets PostgreSQL read the
# batch's rows from the (member, effective_at) index rather than every recent ledger row.
_RECENT_CREDITS_SQL = f"""
SELECT e.member_id, SUM(e.points) FROM {E} e
WHERE e.member_id BETWEEN %s AND %s AND e.member_id IN ({{ids}}) AND {CREDITS_SINCE_SQL}
GROUP BY e.member_id
"""  # noqa: S608  # nosec B608  # table name and a selectors constant; ids inlined by int(); values are parameters

_HOLDERS_SQL = f"""
SELECT id, points_available FROM {M}
WHERE program_id = %s AND points_available > 0 AND id > %s ORDER BY id LIMIT %s
"""  # noqa: S608  # nosec B608  # table name from model metadata; values are parameters


def fifo_excess(ids_and_balances, cutoff: datetime) -> dict[int, int]:
    """Points that have expired under FIFO for each (member id, available balance): the balance
    minus the credits earned since `cutoff`, where positive."""
    balances = dict(ids_and_balances)
    if not balances:
        return {}
    sql = _RECENT_CREDITS_SQL.format(ids=ids_sql(balances))
    recent = dict(fetch(sql, [min(balances), max(balances), dt(cutoff), dt(cutoff)]))
    excess = {}
    for member_id, balance in balances.items():
        over = balance - int(recent.get(member_id) or 0)
        if over > 0:
            excess[member_id] = over
    return excess


_INACTIVE_HOLDERS_SQL = f"""
SELECT id, points_available FROM {M}
WHERE program_id = %s AND points_available > 0 AND id > %s
  AND COALESCE(last_activity_at, enrolled_at) < %s
ORDER BY id LIMIT %s
"""  # noqa: S608  # nosec B608  # table name from model metadata; values are parameters


def _expiring_batch(ctx: Context, cutoff: datetime, last: int) -> tuple[int | None, dict]:
    """The next batch of members holding points after id `last`, read without locks: the id
    it ends at (None when there are no more) and the points of each that expire by `cutoff`
    under the program's policy (FIFO excess, or the whole balance of the inactive)."""
    program = ctx.program
    if program.expiry_policy == Program.ExpiryPolicy.AFTER_INACTIVITY:
        rows = fetch(_INACTIVE_HOLDERS_SQL, [program.pk, last, dt(cutoff), ctx.batch_size])
        expiring = dict(rows)
    else:
        rows = fetch(_HOLDERS_SQL, [program.pk, last, ctx.batch_size])
        expiring = fifo_excess(rows, cutoff)
    return (rows[-1][0] if rows else None), expiring


def expire_points(ctx: Context) -> dict:
    """Expire points by the program's policy: none; N months after earning, first in first out;
    or the whole available balance after M months without activity. One expire row per member
    and night."""
    program = ctx.program
    summary = ctx.track({"policy": program.expiry_policy, "members": 0, "points": 0, "batches": 0})
    if program.expiry_policy == Program.ExpiryPolicy.NONE:
        return summary
    by_inactivity = program.expiry_policy == Program.ExpiryPolicy.AFTER_INACTIVITY
    cutoff = expiry_cutoff(program, ctx.night)
    last = 0
    while True:
        # Candidates are read without locks; what expires is recomputed under the locks.
        last, candidates = _expiring_batch(ctx, cutoff, last)
        if last is None:
            break
        if not candidates:
            continue
        with batch_transaction(ctx):
            ledger.lock_members(candidates)
            if by_inactivity:
                locked = fetch(
                    f"SELECT id, points_available FROM {M} WHERE id IN ({ids_sql(candidates)}) "  # noqa: S608  # nosec B608  # table name from model metadata; ids inlined by int(); values are parameters
                    "AND points_available > 0 AND COALESCE(last_activity_at, enrolled_at) < %s",
                    [dt(cutoff)],
                )
                expiring = dict(locked)
            else:
                locked = fetch(
                    f"SELECT id, points_available FROM {M} WHERE id IN ({ids_sql(candidates)}) "  # noqa: S608  # nosec B608  # table name from model metadata; ids inlined by int(); values are parameters
                    "AND points_available > 0",
                    [],
                )
                expiring = fifo_excess(locked, cutoff)
            reason = "inactivity" if by_inactivity else "fifo"
            postings = [
                BulkPosting(
                    member_id=member_id,
                    kind=Kind.EXPIRE,
                    bucket=Bucket.AVAILABLE,
                    points=-points,
                    txn=uuid.uuid4(),
                    effective_at=ctx.now,
                    reason=reason,
                )
                for member_id, points in sorted(expiring.items())
            ]
            ledger.post_many(program.pk, postings, now=ctx.now)
            summary["members"] += len(postings)
            summary["points"] += sum(expiring.values())
            summary["batches"] += 1
    return summary


# Notifications ----------------------------------------------------------------------------------


def notify_members(ctx: Context) -> dict:
    """Claim and send the members' emails: points expiring within 30 days (once per member and
    month) and tier changes (once per change)."""
    program = ctx.program
    summary = ctx.track({"expiring_claimed": 0, "tier_claimed": 0, "sent": 0, "failed": 0})
    with batch_transaction(ctx):
        summary["expiring_claimed"] = _claim_expiry_warnings(ctx)
        summary["tier_claimed"] = notifications.claim_tier_changes(
            program, since=ctx.now - timedelta(days=7), now=ctx.now
        )
    if ctx.dry_run:
        return summary
    if ctx.queue_emails:
        from .tasks import send_notifications  # tasks import this module

        summary["queued"] = 0
        for ids in notifications.pending_ids(program):
            send_notifications.delay(program.pk, ids, ctx.now.isoformat())
            summary["queued"] += len(ids)
        return summary
    sent, failed = notifications.send_pending(program, now=ctx.now)
    summary["sent"], summary["failed"] = sent, failed
    return summary


def _claim_expiry_warnings(ctx: Context) -> int:
    program, night = ctx.program, ctx.night
    if program.expiry_policy == Program.ExpiryPolicy.NONE:
        return 0
    horizon = night + timedelta(days=EXPIRY_WARNING_DAYS)
    cutoff = expiry_cutoff(program, horizon)
    key = night.strftime("%Y-%m")
    claimed = 0
    last = 0
    while True:
        last, warn = _expiring_batch(ctx, cutoff, last)
        if last is None:
            break
        claimed += notifications.claim_expiry_warnings(
            program, warn, key=key, horizon=horizon, now=ctx.now
        )
    return claimed


# Running ----------------------------------------------------------------------------------------

# A nightly job takes the context of one program's night and returns its summary. The chain,
# every job in the order it runs, is written in the composition root (config/nightly.py).
Job = Callable[[Context], dict]
Chain = Sequence[tuple[str, Job]]


@contextmanager
def _exclusive(name: str):
    """One run of a job at a time (a PostgreSQL advisory lock; SQLite has one writer anyway).

    Also turns PostgreSQL's JIT off for the run: the batch queries are small and many, and on
    a large program the planner's estimate for a batch sits near the JIT threshold, where
    compiling would cost more than the batch itself.
    """
    if connection.vendor != "postgresql":
        yield
        return
    key = zlib.crc32(f"members.jobs.{name}".encode())
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        if not cursor.fetchone()[0]:
            raise JobAlreadyRunning(name)
        cursor.execute("SET jit = off")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET jit")
            cursor.execute("SELECT pg_advisory_unlock(%s)", [key])


def run_job(
    name: str,
    job: Job,
    *,
    now: datetime | None = None,
    programs=None,
    dry_run: bool = False,
    batch_size: int | None = None,
    user=None,
    queue_emails: bool = False,
) -> dict:
    """Run one nightly job for every active program (or those given), recorded as a JobRun.
    Returns the summary per program slug."""
    now = now or timezone.now()
    if programs is None:
        programs = Program.objects.filter(status=Program.Status.ACTIVE).order_by("pk")
    with record_job_run(f"members.{name}", dry_run=dry_run, user=user) as run, _exclusive(name):
        for program in programs:
            size = batch_size or (tier_job.BATCH_SIZE if name == "requalify_tiers" else BATCH_SIZE)
            ctx = Context(program, now, _local_date(program, now), dry_run, size, queue_emails)
            night = {"night": ctx.night.isoformat()}

            def committed(done, slug=program.slug, night=night):
                if done is not None:
                    run.summary[slug] = {**night, **done}
                save_progress(run)

            # Written as it goes, batch by batch: staff follow a long run, and a run whose
            # worker died shows what it had committed.
            ctx.on_batch = committed
            run.summary[program.slug] = {**night, **job(ctx)}
            save_progress(run)
    return run.summary


def run_chain(
    chain: Chain,
    *,
    now: datetime | None = None,
    programs=None,
    dry_run: bool = False,
    batch_size: int | None = None,
    user=None,
    queue_emails: bool = False,
) -> dict:
    """Run the jobs of `chain` in order. A failing job stops the chain (its JobRun says why);
    the next night, or a re-run, completes it. Returns the summaries by job name."""
    now = now or timezone.now()
    return {
        name: run_job(
            name,
            job,
            now=now,
            programs=programs,
            dry_run=dry_run,
            batch_size=batch_size,
            user=user,
            queue_emails=queue_emails,
        )
        for name, job in chain
    }
