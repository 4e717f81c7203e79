"""The nightly member jobs on a large demo data set: time and peak memory of each job.

    .venv/bin/python bench/nightly_members.py [--members 1000000] [--keep-db] [--batch-size N]
                                              [--job-timeout SECONDS] [--database-url URL]

1. Seeds a database of its own, ``<name>_seed_<members>`` (``loyalty_bench_nightly_seed_1000000``
   by default): drops and recreates it, migrates, ``seed_demo --members N --no-nightly`` (a year
   of history that ends now, last night's jobs not run), then ``VACUUM (ANALYZE)`` so that the
   plans do not depend on when autovacuum passes. Each step is timed. With ``--keep-db`` an
   existing seed database of the same size is reused (seeding a million members takes about
   ten minutes); what it recorded (seed time, the moment it ended) is kept in a comment on it.
2. Copies it to the working database (``loyalty_bench_nightly``, ``CREATE DATABASE ... TEMPLATE``)
   so that every run starts from the same state, and migrates the copy (migrations added since
   the seed).
3. Runs the nightly chain (release_pending_points, expire_points, requalify_tiers,
   notify_members) as of the first night after the seed (02:30, Europe/Paris), each job in a
   child process of its own through ``config.nightly.run_job``, with ``EMAIL_URL=dummymail://``
   (emails are rendered, not delivered). notify_members queues the emails as the scheduled run
   does (``queue_emails=True``; the batches are counted, not pushed to a broker); then a last
   step, ``send_emails``, sends them in one process as the workers would (N workers on N cores
   take about 1/N of its time). It is timed apart from the chain. Per job: wall time, CPU of the
   Python process and of its PostgreSQL backend, peak RSS of the process (``wait4``; the
   backend's memory is not counted), its RSS once Django is set up, and the job's summary.
   "other work" is the machine's CPU beyond the job and its backend (other processes, and
   PostgreSQL's parallel workers, which a plan may start): above 25 % of a core the job is
   flagged DISTURBED.
   With ``--job-timeout``, a job still running that many seconds after its start (Django set up)
   is stopped (its current batch rolls back, as when a run is killed) and reported with how far
   it got (the member id its last batch reached, or for notify_members the emails sent of those
   claimed) and the time the whole job would take at that pace.
4. Runs the chain a second time, at the same moment: it must do nothing (idempotence). Skipped
   when a job of the first chain was stopped (and its send step when the first one was).
5. Runs ``manage.py check_ledger``.

Ends with greppable ``nightly_members:`` lines and writes the figures as JSON to
bench/results/nightly_members_<members>.json. Memory is flat when the peak RSS at 100k and 1M
members is the same; run the script at both sizes to compare.
"""

import argparse
import json
import os
import secrets
import subprocess
import sys
import threading
import time
import zoneinfo
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
PYTHON = sys.executable
JOB_MARKER = "NIGHTLY_BENCH_JOB "
START_MARKER = "NIGHTLY_BENCH_START "
PROGRESS_MARKER = "NIGHTLY_BENCH_PROGRESS "
CLAIMED_MARKER = "NIGHTLY_BENCH_CLAIMED "
SEED_COMMENT = "nightly_members seed "
CHAIN = ("release_pending_points", "expire_points", "requalify_tiers", "notify_members")
# After the chain: sending the emails notify_members queued (the workers' share of the night).
SEND_STEP = "send_emails"
QUEUE_ENV = "NIGHTLY_BENCH_QUEUE_EMAILS"
# Summary counts that mean a job did something (the others count what it looked at).
WORK_KEYS = {
    "release_pending_points": ("purchases", "points"),
    "expire_points": ("members", "points"),
    "requalify_tiers": ("upgrades", "downgrades", "manual_ended", "renewed", "bounds"),
    "notify_members": ("expiring_claimed", "tier_claimed", "sent", "failed", "queued"),
    SEND_STEP: ("sent", "failed"),
}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# The jobs run as of the first scheduled run after the seed: the beat's default (NIGHTLY_HOUR and
# NIGHTLY_MINUTE, 02:30) in the demo program's time zone.
NIGHTLY_AT = clock(2, 30)
PROGRAM_TZ = zoneinfo.ZoneInfo("Europe/Paris")
# Share of one core, beyond the job's process and its backend, above which a job's figures are
# flagged as disturbed (PostgreSQL's own writers take a few percent during heavy writes).
OTHER_CPU_LIMIT_PCT = 25


# Child process: one job (`nightly_members.py _job NAME AT BATCH_SIZE`) --------------------------


def _vm_kb(pid: int | str, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _proc_cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def child_job(name: str, at: str, batch_size: int) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.db import connection

    from config import nightly
    from members import jobs, ledger, notifications

    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    now = datetime.fromisoformat(at)
    rss_setup_kb = _vm_kb("self", "VmHWM")
    print(
        START_MARKER
        + json.dumps({"backend": backend, "rss_after_setup_mb": round(rss_setup_kb / 1024, 1)}),
        flush=True,
    )
    backend_cpu0 = _proc_cpu_s(backend)  # same machine: the server runs on 127.0.0.1
    cpu0, wall0 = time.process_time(), time.perf_counter()

    # Progress, for a job stopped by --job-timeout: the highest member id of each batch once
    # locked or checked for expired points (batches go in id order), and the end of
    # notify_members' claims.
    lock_members, send_pending = ledger.lock_members, notifications.send_pending

    def lock_and_report(ids, *a, **kw):
        result = lock_members(ids, *a, **kw)
        if ids:
            print(f"{PROGRESS_MARKER}{time.perf_counter() - wall0:.2f} {max(ids)}", flush=True)
        return result

    fifo_excess = jobs.fifo_excess

    def excess_and_report(ids_and_balances, *a, **kw):
        rows = list(ids_and_balances)
        if rows:
            print(f"{PROGRESS_MARKER}{time.perf_counter() - wall0:.2f} {rows[-1][0]}", flush=True)
        return fifo_excess(rows, *a, **kw)

    def send_and_report(*a, **kw):
        print(f"{CLAIMED_MARKER}{time.perf_counter() - wall0:.2f}", flush=True)
        return send_pending(*a, **kw)

    jobs.fifo_excess = excess_and_report
    if name == SEND_STEP:
        # What the workers do with the queued batches (members.tasks.send_notifications), here
        # in one process, one batch after the other.
        from loyalty.models import Program

        summary = {}
        for program in Program.objects.filter(status=Program.Status.ACTIVE).order_by("pk"):
            sent = failed = 0
            for ids in notifications.pending_ids(program):
                batch_sent, batch_failed = send_pending(program, now=now, ids=ids)
                sent, failed = sent + batch_sent, failed + batch_failed
            summary[program.slug] = {"sent": sent, "failed": failed}
    else:
        ledger.lock_members, notifications.send_pending = lock_and_report, send_and_report
        queue = name == "notify_members" and os.environ.get(QUEUE_ENV) == "1"
        if queue:
            # As the scheduled run (members.tasks.run_nightly): the emails are queued for the
            # workers in batches. Counted here, not pushed to a broker: the bench has no workers.
            from members import tasks

            tasks.send_notifications.delay = lambda *args, **kwargs: None
        summary = nightly.run_job(
            name,
            now=now,
            batch_size=batch_size or None,
            **({"queue_emails": True} if queue else {}),
        )
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    backend_cpu = _proc_cpu_s(backend) - backend_cpu0
    print(
        JOB_MARKER
        + json.dumps(
            {
                "job_s": round(wall, 2),
                "job_cpu_s": round(cpu, 2),
                "backend_cpu_s": round(backend_cpu, 2),
                "rss_after_setup_mb": round(rss_setup_kb / 1024, 1),
                "summary": summary,
            }
        ),
        flush=True,
    )


# Database ----------------------------------------------------------------------------------------


def _with_db(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def _admin(url: str):
    return psycopg.connect(_with_db(url, "postgres"), autocommit=True)


def _check_name(name: str) -> None:
    if "bench" not in name:
        raise SystemExit(f"refusing to drop database {name!r}: its name must contain 'bench'")


def seed_record(url: str, seed_db: str) -> dict | None:
    """What the seed database recorded when it was complete (None: missing or incomplete)."""
    with _admin(url) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            [seed_db],
        ).fetchone()
    if not row or not row[0] or not row[0].startswith(SEED_COMMENT):
        return None
    return json.loads(row[0][len(SEED_COMMENT) :])


def seed(url: str, seed_db: str, members: int, env: dict) -> dict:
    _check_name(seed_db)
    with _admin(url) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(seed_db))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(seed_db)))
    seed_env = {**env, "DATABASE_URL": _with_db(url, seed_db)}
    t0 = time.monotonic()
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=seed_env, check=True
    )
    t1 = time.monotonic()
    out = subprocess.run(
        [PYTHON, "manage.py", "seed_demo", "--members", str(members), "--no-nightly"],
        cwd=ROOT,
        env=seed_env,
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout
    t2 = time.monotonic()
    for line in out.splitlines():
        print(f"  seed_demo: {line}")
    with psycopg.connect(_with_db(url, seed_db), autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
    t3 = time.monotonic()
    record = {
        "members": members,
        "migrate_s": round(t1 - t0, 1),
        "seed_s": round(t2 - t1, 1),
        "vacuum_analyze_s": round(t3 - t2, 1),
        # The history ends when seed_demo ends; the jobs run as of the next night after it.
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    with _admin(url) as conn:
        conn.execute(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                sql.Identifier(seed_db), sql.Literal(SEED_COMMENT + json.dumps(record))
            )
        )
    return record


def clone(url: str, seed_db: str, work_db: str) -> float:
    _check_name(work_db)
    t0 = time.monotonic()
    with _admin(url) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(work_db))
        )
        # FILE_COPY: one checkpoint and a copy of the files, rather than the whole database
        # through the WAL.
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                sql.Identifier(work_db), sql.Identifier(seed_db)
            )
        )
    return time.monotonic() - t0


def data_size(url: str) -> dict:
    with psycopg.connect(url, autocommit=True) as conn:
        counts = {
            table: conn.execute(
                sql.SQL("SELECT reltuples::bigint FROM pg_class WHERE relname = {}").format(
                    sql.Literal(table)
                )
            ).fetchone()[0]
            for table in ("members_member", "members_purchase", "members_pointsentry")
        }
        counts["database_mb"] = round(
            conn.execute("SELECT pg_database_size(current_database())").fetchone()[0] / 2**20
        )
    return counts


# Jobs --------------------------------------------------------------------------------------------


def _machine_ticks() -> tuple[int, int]:
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(values[:8]) - values[3] - values[4], sum(values[:8])


def machine_busy_pct(seconds: float = 1.0) -> float:
    busy0, total0 = _machine_ticks()
    time.sleep(seconds)
    busy1, total1 = _machine_ticks()
    return round(100 * (busy1 - busy0) / max(1, total1 - total0), 1)


def run_one(name: str, at: str, batch_size: int, env: dict, timeout: float | None) -> dict:
    """Run one job in a child process; its peak RSS and CPU come from wait4(). A job still
    running after `timeout` seconds is stopped (its current batch rolls back) and reported with
    how far it got."""
    busy0, total0 = _machine_ticks()
    wall0 = time.monotonic()
    proc = subprocess.Popen(
        [PYTHON, __file__, "_job", name, at, str(batch_size)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    stopped = job_started = None
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if job_started is None and any(line.startswith(START_MARKER) for line in lines):
            job_started = time.monotonic()  # the timeout counts from the job's start
        if timeout and stopped is None and job_started and time.monotonic() - job_started > timeout:
            stopped = _progress(name, lines, env, time.monotonic() - job_started)
            proc.terminate()
        time.sleep(0.2)
    proc.returncode = os.waitstatus_to_exitcode(status)
    reader.join()
    wall = time.monotonic() - wall0
    busy1, total1 = _machine_ticks()
    if stopped is None and proc.returncode != 0:
        raise SystemExit(f"{name} exited with {proc.returncode}")
    if stopped is None:
        data = _marked(lines, JOB_MARKER)
    else:
        data = {**stopped, "summary": {}, "job_cpu_s": 0.0}
    cores = os.cpu_count() or 1
    process_cpu = usage.ru_utime + usage.ru_stime
    machine_cpu = (busy1 - busy0) / max(1, total1 - total0) * cores * wall
    other = machine_cpu - process_cpu - data["backend_cpu_s"]
    data.update(
        {
            "stopped": stopped is not None,
            "process_s": round(wall, 2),
            "process_cpu_s": round(process_cpu, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # kilobytes on Linux
            "other_pct_of_one_core": round(100 * max(0.0, other) / wall, 1),
        }
    )
    if stopped is not None:
        data["job_cpu_s"] = round(process_cpu, 2)
    data["disturbed"] = data["other_pct_of_one_core"] > OTHER_CPU_LIMIT_PCT
    return data


def _marked(lines: list[str], marker: str) -> dict | None:
    found = [json.loads(line[len(marker) :]) for line in lines if line.startswith(marker)]
    return found[-1] if found else None


def _progress(name: str, lines: list[str], env: dict, elapsed: float) -> dict:
    """How far a job got before being stopped, and the time it would take at that pace."""
    start = _marked(lines, START_MARKER) or {"backend": 0, "rss_after_setup_mb": 0}
    # The child's backend is still there: its CPU so far.
    backend_cpu = _proc_cpu_s(start["backend"]) if start["backend"] else 0.0
    out = {
        "job_s": round(elapsed, 2),
        "backend_cpu_s": round(backend_cpu, 2),
        "rss_after_setup_mb": start["rss_after_setup_mb"],
    }
    progress = [line.split()[1:] for line in lines if line.startswith(PROGRESS_MARKER)]
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
        last_id = conn.execute("SELECT max(id) FROM members_member").fetchone()[0] or 1
        if name == SEND_STEP:
            total, sent = conn.execute(
                "SELECT count(*), count(sent_at) FROM members_membernotification"
            ).fetchone()
            out["progress"] = {"notifications": total, "sent": sent}
            if sent:
                out["progress"]["estimated_s"] = round(elapsed * total / sent)
            return out
        if name == "notify_members":
            claimed_at = [float(x.split()[1]) for x in lines if x.startswith(CLAIMED_MARKER)]
            total, sent = conn.execute(
                "SELECT count(*), count(sent_at) FROM members_membernotification"
            ).fetchone()
            out["progress"] = {"claims_done_s": claimed_at[0] if claimed_at else None}
            out["progress"].update({"notifications": total, "sent": sent})
            if claimed_at and sent:
                sending = elapsed - claimed_at[0]
                out["progress"]["estimated_s"] = round(claimed_at[0] + sending * total / sent)
            if claimed_at:
                return out
            # Still claiming (one transaction: nothing committed yet): how far the claims got.
    if progress:
        at_s, member_id = float(progress[-1][0]), int(progress[-1][1])
        out.setdefault("progress", {}).update(
            {
                "batches": len(progress),
                "member_id": member_id,
                "of_member_id": last_id,
                "estimated_s": round(at_s * last_id / member_id),
            }
        )
        if name == "notify_members":
            out["progress"]["estimated_s_means"] = "the claims alone, before any email is sent"
    else:
        out.setdefault("progress", {})["batches"] = 0
    return out


def did_work(name: str, summary: dict, ignore: tuple = ()) -> int:
    keys = [key for key in WORK_KEYS[name] if key not in ignore]
    return sum(int(per_program.get(key, 0)) for per_program in summary.values() for key in keys)


def describe(summary: dict) -> str:
    parts = []
    for slug, counts in summary.items():
        shown = ", ".join(f"{k} {v}" for k, v in counts.items() if k != "night")
        night = f" (night {counts['night']})" if "night" in counts else ""
        parts.append(f"{slug}{night}: {shown}")
    return "; ".join(parts)


def _print_job(name: str, r: dict) -> None:
    flag = "  DISTURBED" if r["disturbed"] else ""
    took = f"STOPPED after {r['job_s']:.0f} s" if r["stopped"] else f"{r['job_s']:>7.1f} s"
    print(
        f"  {name:<23} {took} (process {r['process_s']:.1f} s), "
        f"CPU python {r['job_cpu_s']:.1f} s + postgres {r['backend_cpu_s']:.1f} s, "
        f"peak RSS {r['peak_rss_mb']:.0f} MB ({r['rss_after_setup_mb']:.0f} MB after "
        f"django.setup), other work {r['other_pct_of_one_core']}% of a core{flag}"
    )
    if r["stopped"]:
        print(f"    --job-timeout: stopped, its current batch rolled back; {r['progress']}")
    else:
        print(f"    {describe(r['summary'])}")


def run_chain(
    title: str, at: str, batch_size: int, env: dict, timeout: float | None, send: bool = True
) -> dict:
    print(f"{title}, as of {at}:")
    results = {}
    for name in CHAIN:
        results[name] = run_one(name, at, batch_size, env, timeout)
        _print_job(name, results[name])
    total = sum(r["job_s"] for r in results.values())
    process_total = sum(r["process_s"] for r in results.values())
    stopped = [name for name, r in results.items() if r["stopped"]]
    print(
        f"  chain: {total:.1f} s in the jobs, {process_total:.1f} s with process start-up"
        + (f" (INCOMPLETE: {', '.join(stopped)} stopped)" if stopped else "")
    )
    # The emails notify_members queued, sent as the workers would (one process, one after the
    # other: N workers on N cores take about 1/N of it).
    emails = None
    if send:
        emails = run_one(SEND_STEP, at, batch_size, env, timeout)
        _print_job(SEND_STEP, emails)
    return {
        "jobs": results,
        "chain_s": round(total, 2),
        "chain_process_s": round(process_total, 2),
        "complete": not stopped,
        "emails": emails,
    }


def next_night(seeded_at: str) -> str:
    """The first nightly run after `seeded_at`, in the program's time zone."""
    local = datetime.fromisoformat(seeded_at).astimezone(PROGRAM_TZ)
    run = datetime.combine(local.date(), NIGHTLY_AT, tzinfo=PROGRAM_TZ)
    if run <= local:
        run = datetime.combine(local.date() + timedelta(days=1), NIGHTLY_AT, tzinfo=PROGRAM_TZ)
    return run.isoformat()


def bench_env(database_url: str) -> dict:
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": "redis://127.0.0.1:6379/1",
            "DEBUG": "0",
            "SECRET_KEY": secrets.token_urlsafe(48),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "0",
            "LOG_LEVEL": "WARNING",
            "EMAIL_URL": "dummymail://",  # rendered, not delivered
            QUEUE_ENV: "1",  # notify_members queues the emails, as the scheduled run does
            "DJANGO_SETTINGS_MODULE": "config.settings",
        }
    )
    return env


# Main --------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument(
        "--keep-db",
        action="store_true",
        help="reuse the seed database when it holds a complete seed of the same size",
    )
    parser.add_argument(
        "--batch-size", type=int, default=0, help="run_job's batch_size (default: the job's own)"
    )
    parser.add_argument(
        "--job-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop a job still running after this long and report how far it got (the "
        "second run is then skipped)",
    )
    parser.add_argument(
        "--database-url",
        default="postgres://postgres@127.0.0.1:5432/loyalty_bench_nightly",
        help="the working database, recreated at each run; its name must contain 'bench'; "
        "the seed database is <name>_seed_<members> on the same server",
    )
    args = parser.parse_args()
    started = time.monotonic()
    busy_before = machine_busy_pct()
    print(f"machine: {os.cpu_count()} cores, {busy_before}% busy before the run")
    if busy_before > 20:
        print("WARNING: the machine is busy with other work; the figures will be slow and noisy")

    url = args.database_url
    work_db = urlsplit(url).path.lstrip("/")
    seed_db = f"{work_db}_seed_{args.members}"
    _check_name(work_db)
    env = bench_env(url)
    record = seed_record(url, seed_db) if args.keep_db else None
    if record and record.get("members") == args.members:
        print(
            f"seed: reusing {seed_db} (--keep-db), seeded in {record['seed_s']} s "
            f"(+ migrate {record['migrate_s']} s, VACUUM ANALYZE {record['vacuum_analyze_s']} s)"
        )
        reused = True
    else:
        print(f"seed: {seed_db}: migrate, seed_demo --members {args.members} --no-nightly")
        record = seed(url, seed_db, args.members, env)
        print(
            f"seed: {args.members} members in {record['seed_s']} s (+ migrate "
            f"{record['migrate_s']} s, VACUUM ANALYZE {record['vacuum_analyze_s']} s)"
        )
        reused = False
    clone_s = clone(url, seed_db, work_db)
    # Migrations added since the seed (with --keep-db) apply to the copy.
    t0 = time.monotonic()
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    migrate_s = time.monotonic() - t0
    size = data_size(url)
    print(
        f"database {work_db}: copied from {seed_db} in {clone_s:.1f} s, migrated in "
        f"{migrate_s:.1f} s; {size['database_mb']} MB, "
        f"about {size['members_member']} members, {size['members_purchase']} purchases, "
        f"{size['members_pointsentry']} ledger rows"
    )

    at = next_night(record["at"])
    first = run_chain("first night", at, args.batch_size, env, args.job_timeout)
    if first["complete"]:
        # The emails left unsent by a stopped send step would be sent by the second run.
        send = not first["emails"]["stopped"]
        second = run_chain(
            "second run, same night", at, args.batch_size, env, args.job_timeout, send=send
        )
        # Unsent emails are queued again by every run (a batch sent twice sends nothing twice):
        # after a stopped send step, that is expected.
        ignore = () if send else ("queued",)
        leftover = {
            name: did_work(name, r["summary"], ignore) for name, r in second["jobs"].items()
        }
        if send:
            leftover[SEND_STEP] = did_work(SEND_STEP, second["emails"]["summary"])
        emails_done = not send or not second["emails"]["stopped"]
        idempotent = second["complete"] and emails_done and not any(leftover.values())
        print(
            "idempotence: "
            + (
                "the second run did nothing"
                if idempotent
                else f"the second run did work or was stopped: {leftover}"
            )
        )
    else:
        second, idempotent = None, None
        print("idempotence: not checked, the first chain was stopped (--job-timeout)")

    t0 = time.monotonic()
    check = subprocess.run(
        [PYTHON, "manage.py", "check_ledger"],
        cwd=ROOT,
        env=env,
        check=False,
        capture_output=True,
        text=True,
    )
    check_s = time.monotonic() - t0
    check_text = (check.stdout + check.stderr).strip()
    print(f"check_ledger ({check_s:.1f} s, exit {check.returncode}): {check_text}")

    jobs = first["jobs"]
    disturbed = any(r["disturbed"] for r in jobs.values())
    peak = max(r["peak_rss_mb"] for r in [*jobs.values(), first["emails"]])
    result = {
        "members": args.members,
        "seed": {**record, "reused": reused},
        "night_at": at,
        "clone_s": round(clone_s, 1),
        "data": size,
        "first": first,
        "second": second,
        "idempotent": idempotent,
        "check_ledger": {
            "exit": check.returncode,
            "seconds": round(check_s, 1),
            "output": check_text[-4000:],
        },
        "machine_busy_before_pct": busy_before,
        "disturbed": disturbed,
        "config": {
            "batch_size": args.batch_size or None,
            "job_timeout": args.job_timeout,
            "cores": os.cpu_count(),
        },
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    emails = first["emails"]
    per_job = " ".join(
        f"{name}_s={'>' if r['stopped'] else ''}{r['job_s']} {name}_rss_mb={r['peak_rss_mb']:.0f}"
        for name, r in [*jobs.items(), (SEND_STEP, emails)]
    )
    print(
        f"nightly_members: members={args.members} seed_s={record['seed_s']} "
        f"chain_s={'' if first['complete'] else '>'}{first['chain_s']} peak_rss_mb={peak:.0f} "
        f"second_chain_s={second['chain_s'] if second else 'na'} "
        f"idempotent={'na' if idempotent is None else int(idempotent)} "
        f"check_ledger={'ok' if check.returncode == 0 else 'FAILED'} "
        f"complete={int(first['complete'])} disturbed={int(disturbed)}"
    )
    print(f"nightly_members: {per_job}")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"nightly_members_{args.members}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT)} ({time.monotonic() - started:.0f} s in all)")
    return 0 if first["complete"] and idempotent and check.returncode == 0 else 1


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "_job":
        child_job(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit(main())
