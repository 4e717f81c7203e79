"""The nightly member jobs: release pending points, expire points, requalify tiers, notify.

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
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.utils import timezone

from loyalty.jobs import record_job_run, save_progress
from loyalty.models import Program
from loyalty.selectors import program_tiers
from loyalty.sql import dt, parse_dt

from . import ledger, notifications, tiers
from .ledger import Bucket, BulkPosting, Kind
from .models import Member, PointsEntry, Purchase, TierChange
from .selectors import CREDITS_SINCE_SQL, EXPIRY_WARNING_DAYS, expiry_cutoff

BATCH_SIZE = 5000
REQUALIFY_BATCH_SIZE = 20000

M = Member._meta.db_table
P = Purchase._meta.db_table
E = PointsEntry._meta.db_table


class JobAlreadyRunning(Exception):
    pass


@dataclass
class Context:
    program: Program
    now: datetime
    night: date
    dry_run: bool
    batch_size: int
    # Hand the emails to worker tasks (in batches) instead of sending them in this job: the
    # chain then ends without waiting for the mail server, and several workers can send.
    queue_emails: bool = False
    # Called after each batch with a copy of the summary the job tracks (`track`), or None.
    on_batch: Callable[[dict | None], None] | None = None
    progress: dict | None = field(default=None, repr=False)

    def track(self, summary: dict) -> dict:
        """The job's summary, whose counts are reported as each batch commits."""
        self.progress = summary
        return summary


@contextmanager
def batch_transaction(ctx: Context):
    """One batch: a transaction, rolled back at the end on a dry run. Once it has ended, the
    job's tracked summary is reported (run_job writes it to the JobRun and renews its lease)."""
    with transaction.atomic():
        yield
        if ctx.dry_run:
            transaction.set_rollback(True)
    if ctx.on_batch is not None:
        ctx.on_batch(None if ctx.progress is None else dict(ctx.progress))


def _local_date(program: Program, now: datetime) -> date:
    return timezone.localtime(now, program.tzinfo).date()


def _fetch(sql: str, params) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _ids_sql(ids) -> str:
    return ", ".join(str(int(i)) for i in ids)


# Release of pending points ----------------------------------------------------------------------

_DUE_MEMBERS_SQL = f"""
SELECT DISTINCT member_id FROM {P}
WHERE program_id = %s AND released_at IS NULL AND member_id IS NOT NULL
  AND release_at <= %s AND member_id > %s
ORDER BY member_id LIMIT %s
"""  # nosec B608  # table name from model metadata; values are parameters


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
                r[0] for r in _fetch(_DUE_MEMBERS_SQL, [program.pk, dt(now), last, ctx.batch_size])
            ]
            if not ids:
                break
            last = ids[-1]
            ledger.lock_members(ids)
            # Under the locks, no return can move these purchases' points any more.
            due = _fetch(
                "SELECT id, member_id, points_earned - points_reversed, release_at, store_id, "  # nosec B608  # table name from model metadata; ids inlined by int(); values are parameters
                f"occurred_at FROM {P} WHERE member_id IN ({_ids_sql(ids)}) "
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
"""  # nosec B608  # table name and a selectors constant; ids inlined by int(); values are parameters

_HOLDERS_SQL = f"""
SELECT id, points_available FROM {M}
WHERE program_id = %s AND points_available > 0 AND id > %s ORDER BY id LIMIT %s
"""  # nosec B608  # table name from model metadata; values are parameters


def fifo_excess(ids_and_balances, cutoff: datetime) -> dict[int, int]:
    """Points that have expired under FIFO for each (member id, available balance): the balance
    minus the credits earned since `cutoff`, where positive."""
    balances = dict(ids_and_balances)
    if not balances:
        return {}
    sql = _RECENT_CREDITS_SQL.format(ids=_ids_sql(balances))
    recent = dict(_fetch(sql, [min(balances), max(balances), dt(cutoff), dt(cutoff)]))
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
"""  # nosec B608  # table name from model metadata; values are parameters


def _expiring_batch(ctx: Context, cutoff: datetime, last: int) -> tuple[int | None, dict]:
    """The next batch of members holding points after id `last`, read without locks: the id
    it ends at (None when there are no more) and the points of each that expire by `cutoff`
    under the program's policy (FIFO excess, or the whole balance of the inactive)."""
    program = ctx.program
    if program.expiry_policy == Program.ExpiryPolicy.AFTER_INACTIVITY:
        rows = _fetch(_INACTIVE_HOLDERS_SQL, [program.pk, last, dt(cutoff), ctx.batch_size])
        expiring = dict(rows)
    else:
        rows = _fetch(_HOLDERS_SQL, [program.pk, last, ctx.batch_size])
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
                locked = _fetch(
                    f"SELECT id, points_available FROM {M} WHERE id IN ({_ids_sql(candidates)}) "  # nosec B608  # table name from model metadata; ids inlined by int(); values are parameters
                    "AND points_available > 0 AND COALESCE(last_activity_at, enrolled_at) < %s",
                    [dt(cutoff)],
                )
                expiring = dict(locked)
            else:
                locked = _fetch(
                    f"SELECT id, points_available FROM {M} WHERE id IN ({_ids_sql(candidates)}) "  # nosec B608  # table name from model metadata; ids inlined by int(); values are parameters
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


# Tier requalification ---------------------------------------------------------------------------


def _values_sql(program: Program, where: str, purchases: str = "TRUE") -> str:
    """The review values of the members `where` selects. `purchases` restricts the joined
    purchases the same way (on p.member_id): PostgreSQL does not carry a range on m.id over to
    p.member_id, and without it every batch read the window's purchases of all members."""
    value = tiers._value_expression(program)
    return f"""
SELECT m.id, m.tier_id, m.tier_review_on, m.tier_manual_until, m.qualifying_bound,
       COALESCE(SUM(CASE WHEN p.occurred_at >= %s AND p.occurred_at < %s THEN {value} END), 0),
       COALESCE(SUM(CASE WHEN p.occurred_at >= %s THEN {value} END), 0)
FROM {M} m LEFT JOIN {P} p ON p.member_id = m.id AND p.occurred_at >= %s AND {purchases}
WHERE {where}
GROUP BY m.id, m.tier_id, m.tier_review_on, m.tier_manual_until, m.qualifying_bound
ORDER BY m.id
"""  # nosec B608  # table names and SQL built in this module; ids inlined by int()


def _as_decimal(value) -> Decimal:
    return Decimal(str(value or 0)).quantize(Decimal("0.01"))


def _as_date(value) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(value)


def requalify_tiers(ctx: Context) -> dict:
    """Review every member's tier: upgrades the metric supports, downgrades once the grace has
    passed (one tier or straight down, by policy), the end of tiers set by staff, and the exact
    qualifying bound that lets purchases skip the lookup."""
    program, night = ctx.program, ctx.night
    all_tiers = program_tiers(program)
    summary = ctx.track(
        {
            "members": 0,
            "upgrades": 0,
            "downgrades": 0,
            "manual_ended": 0,
            "renewed": 0,
            "bounds": 0,
            "batches": 0,
        }
    )
    if not all_tiers:
        return summary
    review_start, review_end = tiers.window_bounds(program, night - timedelta(days=1))
    now_start, _end = tiers.window_bounds(program, night)
    since = min(review_start, now_start)
    params = [dt(review_start), dt(review_end), dt(now_start), dt(since)]
    last = 0
    while True:
        ids = [
            r[0]
            for r in _fetch(
                f"SELECT id FROM {M} WHERE program_id = %s AND status <> 'closed' AND id > %s "  # nosec B608  # table name from model metadata; values are parameters
                "ORDER BY id LIMIT %s",
                [program.pk, last, ctx.batch_size],
            )
        ]
        if not ids:
            break
        rows = _fetch(
            _values_sql(
                program,
                "m.program_id = %s AND m.id BETWEEN %s AND %s AND m.status <> 'closed'",
                purchases="p.member_id BETWEEN %s AND %s",
            ),
            [*params, ids[0], ids[-1], program.pk, ids[0], ids[-1]],
        )
        last = ids[-1]
        summary["members"] += len(rows)
        candidates = [r[0] for r in rows if _plan(program, all_tiers, night, r)]
        if not candidates:
            continue
        with batch_transaction(ctx):
            ledger.lock_members(candidates)
            locked = _fetch(_values_sql(program, f"m.id IN ({_ids_sql(candidates)})"), params)
            changes, updates = [], []
            for row in locked:
                plan = _plan(program, all_tiers, night, row)
                if not plan:
                    continue
                member_id, tier_id, review_on, manual_until, bound, v_review, _v_now = row
                decision, new_bound = plan
                if decision is not None:
                    new_tier = decision.tier
                    if decision.reason:
                        changes.append(
                            TierChange(
                                program_id=program.pk,
                                member_id=member_id,
                                from_tier_id=tier_id,
                                to_tier_id=new_tier.pk if new_tier else None,
                                reason=decision.reason,
                                qualifying_value=_as_decimal(v_review),
                                created_at=ctx.now,
                            )
                        )
                        key = {
                            TierChange.Reason.REQUALIFICATION: "upgrades",
                            TierChange.Reason.DOWNGRADE: "downgrades",
                            TierChange.Reason.MANUAL_ENDED: "manual_ended",
                        }[decision.reason]
                        summary[key] += 1
                    else:
                        summary["renewed"] += 1
                    tier_id = new_tier.pk if new_tier else None
                    review_on = decision.review_on
                    if decision.clear_manual:
                        manual_until = None
                if new_bound is not None:
                    summary["bounds"] += 1
                    bound = new_bound
                updates.append((tier_id, review_on, manual_until, bound, member_id))
            TierChange.objects.bulk_create(changes)
            with connection.cursor() as cursor:
                cursor.executemany(
                    f"UPDATE {M} SET tier_id = %s, tier_review_on = %s, tier_manual_until = %s, "  # nosec B608  # table name from model metadata; values are parameters
                    "qualifying_bound = %s WHERE id = %s",
                    updates,
                )
            summary["batches"] += 1
    return summary


def _plan(program, all_tiers, night, row):
    """(decision or None, new bound or None) for one member row, or None if nothing to do."""
    _id, tier_id, review_on, manual_until, bound, v_review, v_now = row
    decision = tiers.decide(
        program,
        all_tiers,
        tiers.tier_by_pk(all_tiers, tier_id),
        _as_decimal(v_review),
        review_on=_as_date(review_on),
        manual_until=_as_date(manual_until),
        night=night,
    )
    exact = _as_decimal(v_now)
    new_bound = exact if _as_decimal(bound) != exact else None
    if decision is None and new_bound is None:
        return None
    return decision, new_bound


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

# In the order the nightly chain runs them. Apps to the right of members add their own jobs
# with `register_job` (from their AppConfig.ready), so that members never imports them.
JOBS: dict[str, Callable[[Context], dict]] = {
    "release_pending_points": release_pending_points,
    "expire_points": expire_points,
    "requalify_tiers": requalify_tiers,
    "notify_members": notify_members,
}
NIGHTLY_ORDER = list(JOBS)


def register_job(name: str, job: Callable[[Context], dict], *, after: str) -> None:
    """Add a nightly job, run right after `after` (idempotent: registering twice is a no-op)."""
    JOBS[name] = job
    if name not in NIGHTLY_ORDER:
        NIGHTLY_ORDER.insert(NIGHTLY_ORDER.index(after) + 1, name)


@contextmanager
def _exclusive(name: str):
    """One run of a job at a time (a PostgreSQL advisory lock; SQLite has one writer anyway).

    Also turns PostgreSQL's JIT off for the run: the batch queries are small and many, and at
    a million members the planner's estimate for a batch sits near the JIT threshold, where
    compiling cost about a second per batch.
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
    job = JOBS[name]
    now = now or timezone.now()
    if programs is None:
        programs = Program.objects.filter(status=Program.Status.ACTIVE).order_by("pk")
    with record_job_run(f"members.{name}", dry_run=dry_run, user=user) as run, _exclusive(name):
        for program in programs:
            size = batch_size or (REQUALIFY_BATCH_SIZE if name == "requalify_tiers" else BATCH_SIZE)
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


def run_nightly(
    *, now: datetime | None = None, dry_run: bool = False, user=None, queue_emails: bool = False
) -> dict:
    """The nightly chain, in order. A failing job stops the chain (its JobRun says why); the
    next night, or a re-run, completes it."""
    now = now or timezone.now()
    return {
        name: run_job(name, now=now, dry_run=dry_run, user=user, queue_emails=queue_emails)
        for name in NIGHTLY_ORDER
    }
