"""POS purchase throughput, end to end, against a hand-written SQL baseline.

    .venv/bin/python bench/pos_throughput.py [--seconds 20] [--clients 16] [--workers 3]
                                             [--threads 2] [--members 2000] [--database-url URL]

1. Recreates its own PostgreSQL database (default ``loyalty_bench``) and migrates it.
2. Builds a program, tiers, a shop, earning rules, one API key and ``--members`` members through
   the project's services (in a Django subprocess), and counts the SQL queries of one purchase
   through Django's test client (``CaptureQueriesContext``, as the test suite does).
3. Starts gunicorn as production does (``bin/serve web``: threaded workers that keep the
   connection alive, access log on stdout), throttle counted in Redis, DEBUG off.
4. ``--clients`` asyncio clients post ``POST /api/v1/purchases/`` for ``--seconds`` seconds
   (the first ``--warmup`` seconds are not measured). Only 201 counts as a success.
5. Runs the same SQL as a purchase (without Django) from ``--clients`` psycopg threads for as
   long: the ceiling the database alone would allow on this machine.

Prints the figures, ends with greppable ``pos_throughput:`` lines and writes them as JSON to
bench/results/pos_throughput.json. Nothing secret is printed.
"""

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import re
import resource
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import zoneinfo
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "pos_throughput.json"
GUNICORN_LOG = ROOT / "bench" / "results" / "pos_throughput.gunicorn.log"
PYTHON = sys.executable
SETUP_MARKER = "POS_BENCH_SETUP "
PURCHASE_PATH = "/api/v1/purchases/"
PARIS = zoneinfo.ZoneInfo("Europe/Paris")
# Categories of the generated lines; the setup gives "beauty" a x2 multiplier and excludes
# "tobacco", so baskets exercise the base rate, a multiplier and an exclusion.
CATEGORIES = ("grocery", "beauty", "hygiene", "tobacco", "home")
QUERY_COUNT_PURCHASES = 20
# Share of one core, beyond the processes measured, above which a run is flagged as disturbed
# (the kernel's own networking share is a few percent).
OTHER_CPU_LIMIT_PCT = 15


# Request bodies ------------------------------------------------------------------------------


def purchase_body(rng: random.Random, card_number: str, receipt_id: str) -> dict:
    """A basket of 1 to 3 lines whose amounts add up exactly to the total (in cents)."""
    lines = []
    total_cents = 0
    for _ in range(rng.randint(1, 3)):
        category = rng.choice(CATEGORIES)
        quantity = rng.randint(1, 3)
        cents = rng.randint(50, 5000)
        total_cents += quantity * cents
        lines.append(
            {
                "sku": f"{category[:4].upper()}-{rng.randint(1, 400)}",
                "category": category,
                "quantity": str(quantity),
                "unit_price": f"{cents // 100}.{cents % 100:02d}",
            }
        )
    return {
        "receipt_id": receipt_id,
        "card_number": card_number,
        "amount": f"{total_cents // 100}.{total_cents % 100:02d}",
        "currency": "EUR",
        "occurred_at": datetime.now(PARIS).isoformat(timespec="milliseconds"),
        "lines": lines,
    }


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list (0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), math.ceil(p / 100 * len(sorted_values))))
    return sorted_values[rank - 1]


def latency_summary(latencies_s: list[float]) -> dict:
    values = sorted(latencies_s)
    return {
        "p50_ms": round(percentile(values, 50) * 1000, 2),
        "p90_ms": round(percentile(values, 90) * 1000, 2),
        "p99_ms": round(percentile(values, 99) * 1000, 2),
        "max_ms": round(values[-1] * 1000, 2) if values else 0.0,
    }


# Django side: runs in a subprocess (`pos_throughput.py _django_setup`) ----------------------


def django_setup(members: int) -> None:
    """Build the data through the project's services; report on stdout as one JSON line."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from loyalty.models import EarningRule, Program, Store, Tier
    from loyalty.services import create_store_api_key
    from members.models import Member
    from members.services import enrol_member

    started = time.perf_counter()
    program = Program.objects.create(
        name="Bench",
        slug="bench",
        currency="EUR",
        time_zone="Europe/Paris",
        return_window_days=30,
        backdating_days=30,
    )
    Tier.objects.create(program=program, name="Bronze", rank=0)
    gold = Tier.objects.create(
        program=program,
        name="Gold",
        rank=1,
        qualify_threshold=Decimal("1000"),
        earn_multiplier=Decimal("1.5"),
    )
    store = Store.objects.create(program=program, name="Paris 01", slug="paris-01", channel="shop")
    Store.objects.create(program=program, name="Web shop", slug="web", channel="web")
    for name, kind, value, scope in [
        ("Beauty x2", EarningRule.Kind.MULTIPLIER, "2", {"category": "beauty"}),
        ("No points on tobacco", EarningRule.Kind.EXCLUSION, "0", {"category": "tobacco"}),
        ("Web rate", EarningRule.Kind.RATE, "2", {"channel": "web"}),  # out of scope here
        ("Hygiene SKU 7 x3", EarningRule.Kind.MULTIPLIER, "3", {"sku": "HYGI-7"}),
    ]:
        EarningRule.objects.create(program=program, name=name, kind=kind, value=value, **scope)
    _api_key, key = create_store_api_key(store=store, name="bench")

    for i in range(members):
        enrol_member(
            program=program,
            channel="shop",
            store=store,
            email=f"member{i}@bench.example",
            first_name=f"Member{i}",
            preferred_language="fr",
        )
    # One member in ten in the Gold tier, so that some purchases carry a tier bonus.
    gold_ids = Member.objects.filter(program=program).order_by("id").values_list("id", flat=True)
    Member.objects.filter(id__in=list(gold_ids)[::10]).update(tier=gold)
    cards = list(Member.objects.filter(program=program).values_list("card_number", flat=True))
    setup_s = time.perf_counter() - started

    # Queries per purchase, through the whole Django stack (middleware, DRF, auth, throttle).
    client = Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Api-Key {key}")
    rng = random.Random(1)

    def post(receipt_id):
        body = purchase_body(rng, rng.choice(cards), receipt_id)
        response = client.post(PURCHASE_PATH, json.dumps(body), content_type="application/json")
        if response.status_code != 201:
            raise SystemExit(
                f"setup purchase answered {response.status_code}: {response.content[:500]!r}"
            )

    for i in range(3):  # warm the URL resolver, the connection and the caches
        post(f"WARM-{i}")
    counts = []
    statements = []
    for i in range(QUERY_COUNT_PURCHASES):
        with CaptureQueriesContext(connection) as captured:
            post(f"COUNT-{i}")
        counts.append(len(captured.captured_queries))
        if len(captured.captured_queries) == max(counts):
            statements = [_describe(q["sql"]) for q in captured.captured_queries]

    # In-process cost of one purchase (no HTTP, no gunicorn): the Django + DRF + service share.
    timed = 200
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(timed):
        post(f"TIMED-{i}")
    in_process_ms = (time.perf_counter() - wall0) / timed * 1000
    in_process_cpu_ms = (time.process_time() - cpu0) / timed * 1000

    print(
        SETUP_MARKER
        + json.dumps(
            {
                "api_key": key,
                "cards": cards,
                "setup_s": round(setup_s, 2),
                "queries_per_purchase": max(counts),
                "queries_per_purchase_min": min(counts),
                "queries_per_purchase_mean": sum(counts) / len(counts),
                "statements": statements,
                "in_process_ms": round(in_process_ms, 2),
                "in_process_cpu_ms": round(in_process_cpu_ms, 2),
            }
        )
    )


def _describe(statement: str) -> str:
    """A short, stable description of one SQL statement: verb, table, lock (each write of a
    statement that writes several tables through WITH clauses)."""
    text = " ".join(statement.split())
    if text.upper().startswith("WITH "):
        writes = re.findall(r'(INSERT INTO|UPDATE) "?(\w+)"?', text)
        return " + ".join(f"{verb.split()[0]} {table}" for verb, table in writes)
    verb = text.split(" ", 1)[0].upper()
    table = re.search(r'(?:FROM|INTO|UPDATE) "?(\w+)"?', text)
    desc = f"{verb} {table.group(1) if table else ''}".strip()
    if "FOR UPDATE" in text:
        desc += " FOR UPDATE"
    return desc


# Database and processes ----------------------------------------------------------------------


def recreate_database(url: str) -> str:
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if "bench" not in name:
        raise SystemExit(f"refusing to drop database {name!r}: its name must contain 'bench'")
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name


def bench_env(database_url: str) -> dict:
    # With DEBUG off, WhiteNoise serves STATIC_ROOT; an empty one spares a warning per process.
    static_root = RESULTS.parent / "staticfiles"
    static_root.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": "redis://127.0.0.1:6379/1",
            "DEBUG": "0",
            "SECRET_KEY": secrets.token_urlsafe(48),  # 64 characters
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "0",
            "POS_API_RATE_PER_MINUTE": str(10**9),
            "LOG_LEVEL": "WARNING",
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "PATH": f"{Path(PYTHON).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHON": PYTHON,
            "STATIC_ROOT": str(static_root),
        }
    )
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gunicorn(
    env: dict, port: int, workers: int, threads: int, extra: list[str]
) -> subprocess.Popen:
    serve = ROOT / "bin" / "serve"
    if serve.exists() and os.access(serve, os.X_OK):
        cmd = [str(serve), "web", *extra]
        env = {
            **env,
            "BIND": f"127.0.0.1:{port}",
            "WEB_CONCURRENCY": str(workers),
            "WEB_THREADS": str(threads),
        }
    else:
        cmd = [
            str(Path(PYTHON).parent / "gunicorn"),
            "config.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--worker-class",
            "config.gunicorn_worker.BalancedThreadWorker",
            "--threads",
            str(threads),
            *extra,
        ]
    GUNICORN_LOG.parent.mkdir(parents=True, exist_ok=True)
    with GUNICORN_LOG.open("wb") as log:
        # The access log (stdout) is written by the workers as in production, then discarded.
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True
        )
    print(
        f"gunicorn: {shlex.join(cmd[:2] + extra)} with {workers} workers of {threads} threads "
        f"on port {port}"
    )
    return proc


def wait_healthy(proc: subprocess.Popen, port: int, timeout: float = 60) -> None:
    import http.client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited with {proc.returncode}; see {GUNICORN_LOG}")
        with contextlib.suppress(OSError):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz", headers={"Host": "127.0.0.1"})
            status = conn.getresponse().status
            conn.close()
            if status == 200:
                return
        time.sleep(0.2)
    raise SystemExit(f"/healthz did not answer 200 within {timeout:.0f} s; see {GUNICORN_LOG}")


def stop_process_group(proc: subprocess.Popen) -> None:
    """Stop gunicorn (its own session, so its workers too) and wait for it."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=25)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# CPU accounting ------------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_ticks(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])  # utime + stime


def _children(pid: int) -> list[int]:
    found = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found.extend(int(c) for c in (task / "children").read_text().split())
    return found


def connections_per_worker(port: int, workers: list[int]) -> list[int]:
    """The established connections to `port` that each gunicorn worker holds (Linux /proc),
    most first: how evenly the clients' kept-alive connections spread."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    counts = []
    for pid in workers:
        held = 0
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    link = os.readlink(fd)
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        held += 1
        counts.append(held)
    return sorted(counts, reverse=True)


def _postgres_pids(dbname: str) -> list[int]:
    """Backends of the bench database and the server's own writers (WAL, checkpoints)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if cmdline.startswith("postgres: ") and (
            f" {dbname} " in cmdline
            or any(w in cmdline for w in ("walwriter", "checkpointer", "background writer"))
        ):
            pids.append(int(entry.name))
    return pids


def _redis_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == "redis-server":
                    pids.append(int(entry.name))
    return pids


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])
    return total - idle, total


class CpuMeter:
    """CPU used during a window: this process, the machine, and named process groups.

    Groups are sampled repeatedly (`sample()`), keeping each pid's last value, so that a
    gunicorn worker recycled during the window still counts up to its last sample."""

    def __init__(self, groups: dict):
        self.groups = groups  # name -> callable returning pids
        self.start_ticks: dict[str, dict[int, int]] = {}
        self.last_ticks: dict[str, dict[int, int]] = {}

    def start(self) -> None:
        self.wall0 = time.monotonic()
        self.self0 = _self_cpu()
        self.machine0 = _machine_ticks()
        for name, pids in self.groups.items():
            ticks = {pid: t for pid in pids() if (t := _proc_ticks(pid)) is not None}
            self.start_ticks[name] = dict(ticks)
            self.last_ticks[name] = dict(ticks)

    def sample(self) -> None:
        for name, pids in self.groups.items():
            for pid in pids():
                t = _proc_ticks(pid)
                if t is not None:
                    self.last_ticks[name][pid] = t

    def stop(self) -> dict:
        self.sample()
        wall = time.monotonic() - self.wall0
        busy0, total0 = self.machine0
        busy1, total1 = _machine_ticks()
        cores = os.cpu_count() or 1
        out = {
            "window_s": round(wall, 2),
            "cores": cores,
            "machine_busy_pct": round(100 * (busy1 - busy0) / max(1, total1 - total0), 1),
            "bench_process_pct_of_one_core": round(100 * (_self_cpu() - self.self0) / wall, 1),
        }
        for name in self.groups:
            used = sum(
                t - self.start_ticks[name].get(pid, 0) for pid, t in self.last_ticks[name].items()
            )
            out[f"{name}_pct_of_one_core"] = round(100 * used / CLOCK_TICKS / wall, 1)
            out[f"{name}_processes_seen"] = len(self.last_ticks[name])
        # Whatever else ran: the kernel's share not charged to a process, other users' work.
        accounted = sum(v for k, v in out.items() if k.endswith("_pct_of_one_core"))
        out["other_pct_of_one_core"] = round(out["machine_busy_pct"] * cores - accounted, 1)
        return out


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_busy_pct(seconds: float = 1.0) -> float:
    busy0, total0 = _machine_ticks()
    time.sleep(seconds)
    busy1, total1 = _machine_ticks()
    return round(100 * (busy1 - busy0) / max(1, total1 - total0), 1)


def cpu_ms_per_op(cpu: dict, count: int) -> dict:
    """CPU milliseconds per operation, by process group, over the measured window."""
    out = {}
    for key, pct in cpu.items():
        if key.endswith("_pct_of_one_core"):
            name = key.removesuffix("_pct_of_one_core").replace("bench_process", "load_generator")
            out[name] = round(pct / 100 * cpu["window_s"] * 1000 / max(1, count), 2)
    return out


def describe_cpu(cpu: dict) -> str:
    parts = [
        f"machine {cpu['machine_busy_pct']}% of {cpu['cores']} cores busy",
        f"load generator {cpu['bench_process_pct_of_one_core']}% of one core",
    ]
    for key, value in cpu.items():
        if key.endswith("_pct_of_one_core") and not key.startswith("bench_process"):
            name = key.removesuffix("_pct_of_one_core")
            seen = cpu.get(f"{name}_processes_seen")
            seen = f" ({seen} processes seen)" if seen is not None else ""
            parts.append(f"{name} {value}% of one core{seen}")
    return "; ".join(parts)


# HTTP load ------------------------------------------------------------------------------------


@dataclass
class Tally:
    measure_from: float
    stop_at: float
    latencies: list = field(default_factory=list)
    ok_total: int = 0
    errors: dict = field(default_factory=dict)  # status or exception name -> count
    error_samples: dict = field(default_factory=dict)
    connections: int = 0

    def error(self, kind: str, sample: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        self.error_samples.setdefault(kind, sample[:500])

    def done(self, t0: float, t1: float) -> None:
        """A success: measured when it completes inside the window."""
        self.ok_total += 1
        if self.measure_from <= t1 <= self.stop_at:
            self.latencies.append(t1 - t0)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _sep, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    close = headers.get("connection", "").lower() == "close"
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:
        body = await reader.read()
        close = True
    return status, close, body


async def http_client(n: int, port: int, key: str, cards: list, tally: Tally, run: str) -> None:
    rng = random.Random(f"{run}-{n}")
    head = (
        f"POST {PURCHASE_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Api-Key {key}\r\nContent-Type: application/json\r\n"
        "Accept: application/json\r\nConnection: keep-alive\r\n"
    ).encode()
    reader = writer = None
    seq = 0
    while time.perf_counter() < tally.stop_at:
        seq += 1
        payload = json.dumps(purchase_body(rng, rng.choice(cards), f"{run}-{n}-{seq}")).encode()
        request = head + b"Content-Length: %d\r\n\r\n" % len(payload) + payload
        t0 = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                tally.connections += 1
            writer.write(request)
            status, close, body = await read_response(reader)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            tally.error(type(exc).__name__, str(exc))
            if writer is not None:
                writer.close()
            reader = writer = None
            await asyncio.sleep(0.05)
            continue
        t1 = time.perf_counter()
        if status == 201:
            tally.done(t0, t1)
        else:
            tally.error(str(status), body.decode("utf-8", "replace"))
        if close:
            # The server closed (a sync worker does after every response, whatever the client
            # asks; a threaded one when a worker restarts): open a new connection.
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def http_load(port, key, cards, clients, seconds, warmup, meter: CpuMeter) -> Tally:
    now = time.perf_counter()
    tally = Tally(measure_from=now + warmup, stop_at=now + seconds)
    run = uuid.uuid4().hex[:8]
    tasks = [
        asyncio.create_task(http_client(n, port, key, cards, tally, run)) for n in range(clients)
    ]
    await asyncio.sleep(warmup)
    meter.start()
    while time.perf_counter() < tally.stop_at:
        await asyncio.sleep(0.5)
        meter.sample()
    tally.cpu = meter.stop()
    await asyncio.gather(*tasks)
    return tally


# SQL baseline --------------------------------------------------------------------------------

# What one purchase sends to PostgreSQL, without Django: the statements captured through the
# test client (see "statements" in the output), hand-written with parameters.
SQL_API_KEY = """
SELECT k.store_id, s.program_id, k.*, s.*, p.*
FROM loyalty_storeapikey k
JOIN loyalty_store s ON k.store_id = s.id
JOIN loyalty_program p ON s.program_id = p.id
WHERE k.prefix = %s AND NOT k.revoked
ORDER BY k.created DESC
LIMIT 1
"""
SQL_RULES = """
SELECT r.id, r.name, r.kind, r.value, r.channel, r.store_id, r.category, r.sku, r.priority,
       r.valid_from, r.valid_until
FROM loyalty_earningrule r JOIN loyalty_program p ON r.program_id = p.id
WHERE r.is_active AND r.program_id = %s
ORDER BY p.name, 3, 9 DESC, 2
"""
SQL_MEMBER = """
SELECT m.*, t.*
FROM members_member m LEFT JOIN loyalty_tier t ON m.tier_id = t.id
WHERE m.card_number = %s AND m.program_id = %s
LIMIT 21
FOR UPDATE OF m
"""
# The purchase and its lines in one statement, the ledger row and the balances in another, as
# the application sends them on PostgreSQL (data-modifying WITH clauses).
SQL_PURCHASE_AND_LINES = """
WITH p AS (
    INSERT INTO members_purchase (public_id, program_id, store_id, member_id, receipt_id,
        total_amount, currency, occurred_at, recorded_at, points_earned, returned_amount,
        points_reversed, breakdown, release_at, released_at, request_hash, response)
    VALUES (%s, %s, %s, %s, %s, %s, 'EUR', %s, now(), %s, 0, 0, %s, %s, NULL, %s, %s)
    RETURNING id
)
INSERT INTO members_purchaseline (purchase_id, line_no, sku, category, quantity, unit_price,
    line_amount, points_earned, returned_quantity)
SELECT (SELECT id FROM p), * FROM unnest(%s::smallint[], %s::varchar[], %s::varchar[],
                     %s::numeric[], %s::numeric[], %s::numeric[], %s::integer[], %s::numeric[])
RETURNING id, purchase_id
"""
SQL_LEDGER_AND_BALANCES = """
WITH e AS (
    INSERT INTO members_pointsentry (txn, program_id, member_id, kind, bucket, points,
        created_at, effective_at, purchase_id, purchase_return_id, store_id, staff_user_id,
        reason)
    VALUES (%s, %s, %s, 'earn', 'pending', %s, now(), %s, %s, NULL, %s, NULL, '')
    RETURNING id
)
UPDATE members_member
SET points_available = points_available + 0, points_pending = points_pending + %s,
    points_lifetime = points_lifetime + %s,
    last_activity_at = GREATEST(COALESCE(last_activity_at, %s), %s)
WHERE id = %s
RETURNING (SELECT array_agg(id) FROM e)
"""


def sql_purchase(conn, rng, prefix, cards, receipt_id, with_rules: bool) -> None:

    body = purchase_body(rng, rng.choice(cards), receipt_id)
    occurred = datetime.fromisoformat(body["occurred_at"])
    lines = body["lines"]
    amounts = [Decimal(li["quantity"]) * Decimal(li["unit_price"]) for li in lines]
    points = int(sum(amounts))
    # Like Django: the key and the rules are read in autocommit, the rest in one transaction.
    key = conn.execute(SQL_API_KEY, [prefix]).fetchone()
    store_id, program_id = key[0], key[1]
    if with_rules:  # only while the application reads the rules on every purchase
        conn.execute(SQL_RULES, [program_id]).fetchall()
    with conn.transaction():
        member_id = conn.execute(SQL_MEMBER, [body["card_number"], program_id]).fetchone()[0]
        breakdown = [
            {
                "code": "base",
                "name": "",
                "factor": "1.0000",
                "amount": body["amount"],
                "points": points,
                "rule_id": None,
            }
        ]
        response = json.dumps(
            {
                **body,
                "id": str(uuid.uuid4()),
                "points_earned": points,
                "breakdown": breakdown,
                "points_available": 0,
                "points_pending": points,
                "tier": "Bronze",
            }
        )
        purchase_id = conn.execute(
            SQL_PURCHASE_AND_LINES,
            [
                uuid.uuid4(),
                program_id,
                store_id,
                member_id,
                receipt_id,
                body["amount"],
                occurred,
                points,
                Jsonb(breakdown),
                occurred + timedelta(days=30),
                "0" * 64,
                response,
                list(range(1, len(lines) + 1)),
                [li["sku"] for li in lines],
                [li["category"] for li in lines],
                [li["quantity"] for li in lines],
                [li["unit_price"] for li in lines],
                [str(a) for a in amounts],
                [int(a) for a in amounts],
                ["0"] * len(lines),
            ],
        ).fetchall()[0][1]
        if points:
            conn.execute(
                SQL_LEDGER_AND_BALANCES,
                [
                    uuid.uuid4(),
                    program_id,
                    member_id,
                    points,
                    occurred,
                    purchase_id,
                    store_id,
                    points,
                    points,
                    occurred,
                    occurred,
                    member_id,
                ],
            ).fetchone()


def sql_baseline(
    url, prefix, cards, clients, seconds, warmup, meter: CpuMeter, with_rules: bool
) -> Tally:
    now = time.perf_counter()
    tally = Tally(measure_from=now + warmup, stop_at=now + seconds)
    lock = threading.Lock()
    run = uuid.uuid4().hex[:8]

    def worker(n: int) -> None:
        rng = random.Random(f"sql-{run}-{n}")
        seq = 0
        with psycopg.connect(url, autocommit=True) as conn:
            while time.perf_counter() < tally.stop_at:
                seq += 1
                t0 = time.perf_counter()
                try:
                    sql_purchase(conn, rng, prefix, cards, f"SQL-{run}-{n}-{seq}", with_rules)
                except psycopg.Error as exc:
                    with lock:
                        tally.error(type(exc).__name__, str(exc))
                    continue
                t1 = time.perf_counter()
                with lock:
                    tally.done(t0, t1)

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(clients)]
    for t in threads:
        t.start()
    time.sleep(warmup)
    meter.start()
    while time.perf_counter() < tally.stop_at:
        time.sleep(0.5)
        meter.sample()
    tally.cpu = meter.stop()
    for t in threads:
        t.join()
    return tally


# Main ----------------------------------------------------------------------------------------


def measured_rate(tally: Tally) -> float:
    return len(tally.latencies) / (tally.stop_at - tally.measure_from)


def database_counters(url: str, dbname: str) -> dict:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_fetched "
            "FROM pg_stat_database WHERE datname = %s",
            [dbname],
        ).fetchone()
    return dict(
        zip(
            ["xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "tup_fetched"],
            row,
            strict=True,
        )
    )


def disturbed(cpu: dict) -> bool:
    """Whether other work took a noticeable share of the machine while measuring."""
    return cpu["other_pct_of_one_core"] > OTHER_CPU_LIMIT_PCT


def print_tally(title: str, tally: Tally, rate: float) -> None:
    lat = latency_summary(tally.latencies)
    print(
        f"{title}: {rate:.1f}/s over {tally.stop_at - tally.measure_from:.1f} s measured "
        f"({len(tally.latencies)} ok), p50 {lat['p50_ms']} ms, p90 {lat['p90_ms']} ms, "
        f"p99 {lat['p99_ms']} ms, max {lat['max_ms']} ms"
    )
    print(f"  CPU: {describe_cpu(tally.cpu)}")
    if disturbed(tally.cpu):
        print(
            f"  WARNING: {tally.cpu['other_pct_of_one_core']}% of a core went to other work "
            "during the measurement: the figures are low"
        )
    for kind, count in sorted(tally.errors.items()):
        print(f"  ERROR {kind} x{count}: {tally.error_samples[kind]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20, help="load duration, per phase")
    parser.add_argument("--warmup", type=float, default=2, help="first seconds not measured")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=2, help="threads per gunicorn worker")
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument(
        "--database-url",
        default="postgres://postgres@127.0.0.1:5432/loyalty_bench",
        help="recreated at each run; its name must contain 'bench'",
    )
    parser.add_argument(
        "--gunicorn-args", default="", help="extra gunicorn arguments, e.g. '--max-requests 0'"
    )
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()
    if args.warmup >= args.seconds:
        parser.error("--warmup must be shorter than --seconds")

    # A SIGTERM (e.g. from run_all's caller) unwinds like Ctrl-C, so gunicorn is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    busy_before = machine_busy_pct()
    print(f"machine: {os.cpu_count()} cores, {busy_before}% busy before the run")
    if busy_before > 20:
        print("WARNING: the machine is busy with other work; the figures will be low and noisy")
    url = args.database_url
    dbname = recreate_database(url)
    env = bench_env(url)
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    print(f"database {dbname}: recreated and migrated in {time.monotonic() - started:.1f} s")

    setup = subprocess.run(
        [PYTHON, __file__, "_django_setup", str(args.members)],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    data = next(
        json.loads(line[len(SETUP_MARKER) :])
        for line in setup.stdout.splitlines()
        if line.startswith(SETUP_MARKER)
    )
    key, cards = data["api_key"], data["cards"]
    print(
        f"setup: {len(cards)} members enrolled through enrol_member, rules and one API key "
        f"in {data['setup_s']} s"
    )
    print(
        f"queries per purchase (CaptureQueriesContext, {QUERY_COUNT_PURCHASES} purchases "
        f"through the test client, BEGIN and COMMIT included): "
        f"{data['queries_per_purchase']} when the basket earns points, "
        f"{data['queries_per_purchase_min']} at least "
        f"(mean {data['queries_per_purchase_mean']:g})"
    )
    for i, statement in enumerate(data["statements"], 1):
        print(f"  {i}. {statement}")
    print(
        f"in-process purchase through the test client: {data['in_process_ms']} ms wall, "
        f"{data['in_process_cpu_ms']} ms CPU (single thread, no HTTP)"
    )

    port = free_port()
    gunicorn = start_gunicorn(
        env, port, args.workers, args.threads, shlex.split(args.gunicorn_args)
    )
    try:
        wait_healthy(gunicorn, port)
        before = database_counters(url, dbname)
        meter = CpuMeter(
            {
                "gunicorn": lambda: [gunicorn.pid, *_children(gunicorn.pid)],
                "postgres": lambda: _postgres_pids(dbname),
                "redis": _redis_pids,
            }
        )
        # Halfway through the measured window: the connections each worker holds.
        spread: list[int] = []
        probe = threading.Timer(
            args.warmup + args.seconds / 2,
            lambda: spread.extend(connections_per_worker(port, _children(gunicorn.pid))),
        )
        probe.start()
        http = asyncio.run(
            http_load(port, key, cards, args.clients, args.seconds, args.warmup, meter)
        )
        probe.join()
    finally:
        stop_process_group(gunicorn)
    # The workers' backends have exited, so their statistics are flushed.
    time.sleep(0.6)
    after = database_counters(url, dbname)
    http_rate = measured_rate(http)
    print_tally(
        f"HTTP ({args.clients} clients, {args.workers} workers x {args.threads} threads)",
        http,
        http_rate,
    )
    print(f"  CPU ms per purchase: {cpu_ms_per_op(http.cpu, len(http.latencies))}")
    print(
        f"  connections opened: {http.connections} for {http.ok_total} purchases; held per "
        f"worker halfway through: {spread}"
    )
    server = {k: round((after[k] - before[k]) / max(1, http.ok_total), 2) for k in before}
    print(f"  PostgreSQL counters per purchase: {server}")

    baseline = None
    if not args.skip_baseline:
        meter = CpuMeter({"postgres": lambda: _postgres_pids(dbname)})
        prefix = key.partition(".")[0]
        # The baseline mirrors the statements captured above: the earning rules are read only
        # if the application reads them on every purchase.
        with_rules = any("loyalty_earningrule" in st for st in data["statements"])
        baseline = sql_baseline(
            url, prefix, cards, args.clients, args.seconds, args.warmup, meter, with_rules
        )
        print_tally(
            f"SQL baseline ({args.clients} psycopg threads)", baseline, measured_rate(baseline)
        )
        print(f"  CPU ms per transaction: {cpu_ms_per_op(baseline.cpu, len(baseline.latencies))}")

    lat = latency_summary(http.latencies)
    errors = sum(http.errors.values())
    result = {
        "purchases_per_s": round(http_rate, 1),
        **lat,
        "queries_per_purchase": data["queries_per_purchase"],
        "queries_per_purchase_min": data["queries_per_purchase_min"],
        "errors": errors,
        "error_samples": http.error_samples,
        "connections": http.connections,
        "connections_per_worker": spread,
        "cpu": http.cpu,
        "cpu_ms_per_purchase": cpu_ms_per_op(http.cpu, len(http.latencies)),
        "machine_busy_before_pct": busy_before,
        "disturbed": disturbed(http.cpu),
        "pg_counters_per_purchase": server,
        "in_process_ms": data["in_process_ms"],
        "in_process_cpu_ms": data["in_process_cpu_ms"],
        "statements": data["statements"],
        "config": {
            "seconds": args.seconds,
            "warmup": args.warmup,
            "clients": args.clients,
            "workers": args.workers,
            "threads": args.threads,
            "members": args.members,
            "gunicorn_args": args.gunicorn_args,
            "cores": os.cpu_count(),
        },
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    print(
        f"pos_throughput: purchases_per_s={result['purchases_per_s']} p50_ms={lat['p50_ms']} "
        f"p90_ms={lat['p90_ms']} p99_ms={lat['p99_ms']} max_ms={lat['max_ms']} "
        f"queries_per_purchase={data['queries_per_purchase']:g} errors={errors} "
        f"workers={args.workers} threads={args.threads} clients={args.clients} "
        f"disturbed={int(result['disturbed'])}"
    )
    if baseline is not None:
        base_rate = measured_rate(baseline)
        base_lat = latency_summary(baseline.latencies)
        ratio = http_rate / base_rate if base_rate else 0.0
        result["baseline"] = {
            "sql_tx_per_s": round(base_rate, 1),
            **base_lat,
            "errors": sum(baseline.errors.values()),
            "cpu": baseline.cpu,
            "cpu_ms_per_tx": cpu_ms_per_op(baseline.cpu, len(baseline.latencies)),
            "disturbed": disturbed(baseline.cpu),
        }
        result["ratio_http_to_sql"] = round(ratio, 3)
        print(
            f"pos_throughput: baseline_sql_tx_per_s={base_rate:.1f} "
            f"baseline_p50_ms={base_lat['p50_ms']} baseline_p99_ms={base_lat['p99_ms']} "
            f"ratio_http_to_sql={ratio:.3f}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)} ({time.monotonic() - started:.0f} s in all)")
    return 1 if errors else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "_django_setup":
        django_setup(int(sys.argv[2]))
    else:
        sys.exit(main())
