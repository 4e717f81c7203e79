"""The KPI snapshots on a large demo data set: full recompute against a plain scan, the nightly
incremental recompute, peak memory and the dashboard's response time.

    .venv/bin/python bench/analytics.py [--members 20000] [--months 12] [--day-purchases N]
                                        [--dashboard-requests 20] [--keep-db]
                                        [--database-url URL]

1. Recreates its own PostgreSQL database (``loyalty_bench_analytics`` by default: its name must
   contain "bench"), migrates it, runs ``seed_demo --members N --months 12`` (a year of history
   ending now, last night's member jobs run) and ``VACUUM (ANALYZE)``, each step timed. With
   ``--keep-db`` the database of the last run is measured again (only VACUUM ANALYZE).
2. In a child process (Django set up, DEBUG off): times ``SELECT sum(total_amount) FROM
   members_purchase`` as a sequential scan (index scans off for it; a warm-up, then the median
   of three), then the full recompute of each period kind in its own run
   (``analytics.services.recompute(program=program, period_kind=kind, full=True)``, month,
   week and quarter in turn), then of every kind in one run
   (``recompute_kinds(program=program, period_kinds=KINDS, full=True)``, what
   ``recompute_kpis --full`` does by default, the sums that add up read once for all kinds),
   and prints each time as a multiple of the scan; the headline ``full_s`` is the one run.
3. In a second child: posts a day of new purchases through ``members.services.record_purchase``
   (by default the average number per day of the seeded year; members and anonymous customers,
   occurred today), then runs the nightly incremental recompute of every kind
   (``recompute_kinds``, as the nightly chain does) and times it. Its safety margin (what was
   recorded in the 10 minutes before the last run is looked at again) is set to 0: the seed was
   recorded minutes before the full recompute, where a real night comes a day after it.
4. In a third child: logs a staff user in through Django's test client and times
   ``GET /staff/`` (the overview of the demo program): the first request, then the median and
   the slowest of ``--dashboard-requests`` more.

Peak memory is each child's peak RSS (``getrusage``; PostgreSQL's memory is not counted). Ends
with greppable ``analytics:`` lines and writes the figures as JSON to
bench/results/analytics.json. The issue's scale is ``--members 1000000`` (about 10 million
purchases; seeding alone took 21 minutes on the 2-core machine).
"""

import argparse
import json
import os
import random
import resource
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "analytics.json"
PYTHON = sys.executable
MARKER = "ANALYTICS_BENCH "
KINDS = ("month", "week", "quarter")


# Child processes (`analytics.py _full|_nightly|_dashboard ...`) ---------------------------------


def _django():
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _report(data: dict) -> None:
    print(MARKER + json.dumps({**data, "peak_rss_mb": _peak_rss_mb()}), flush=True)


def _program():
    from demo.program import DEMO_SLUG
    from loyalty.models import Program

    return Program.objects.get(slug=DEMO_SLUG)


def child_full() -> None:
    """The plain scan, then the full recompute of each period kind."""
    _django()
    from django.db import connection, transaction

    from analytics import services

    program = _program()
    scans = []
    with transaction.atomic(), connection.cursor() as cursor:
        # A sequential scan of the table: with the covering (program, occurred_at) index, the
        # planner would pick an index-only scan of it, which sums the table about twice slower.
        for setting in ("enable_indexscan", "enable_indexonlyscan", "enable_bitmapscan"):
            cursor.execute("SELECT set_config(%s, 'off', true)", [setting])
        for _ in range(4):
            t0 = time.perf_counter()
            cursor.execute("SELECT sum(total_amount) FROM members_purchase")
            cursor.fetchone()
            scans.append(time.perf_counter() - t0)
    kinds = {}
    for kind in KINDS:
        t0 = time.perf_counter()
        summary = services.recompute(program=program, period_kind=kind, full=True)
        kinds[kind] = {"s": round(time.perf_counter() - t0, 3), "periods": summary["total"]}
    # Every kind in one run, as `recompute_kpis --full` does by default: the sums that add up
    # are read once for all kinds.
    t0 = time.perf_counter()
    services.recompute_kinds(program=program, period_kinds=KINDS, full=True)
    together_s = round(time.perf_counter() - t0, 3)
    _report(
        {"scan_s": round(statistics.median(scans[1:]), 4), "kinds": kinds, "together_s": together_s}
    )


def child_nightly(day_purchases: int) -> None:
    """A day of purchases through the services, then the nightly incremental recompute."""
    _django()
    from datetime import timedelta
    from decimal import Decimal

    from django.utils import timezone

    from analytics import services
    from loyalty.models import Store
    from members.models import Member, Purchase
    from members.services import record_purchase

    program = _program()
    rng = random.Random(7)
    now = timezone.now()
    midnight = timezone.localtime(now, program.tzinfo).replace(hour=0, minute=0, second=0)
    seconds_today = max(60, int((now - midnight).total_seconds()) - 60)
    stores = list(Store.objects.filter(program=program).order_by("pk"))
    members_n = Member.objects.filter(program=program).count()
    if day_purchases <= 0:
        day_purchases = max(1, Purchase.objects.filter(program=program).count() // 365)
    cards = list(
        Member.objects.filter(program=program, status="active")
        .order_by("?")
        .values_list("card_number", flat=True)[: min(members_n, day_purchases)]
    )
    t0 = time.perf_counter()
    for n in range(day_purchases):
        record_purchase(
            store=rng.choice(stores),
            receipt_id=f"bench-{now:%Y%m%d%H%M%S}-{n}",
            amount=Decimal(rng.randrange(500, 12000)) / 100,
            currency=program.currency,
            occurred_at=midnight
            + (now - midnight) * (rng.randrange(seconds_today) / seconds_today),
            card_number=rng.choice(cards) if cards and rng.random() < 0.7 else None,
        )
    post_s = time.perf_counter() - t0
    # The seed was recorded minutes before the full recompute; a real night comes a day after
    # the last run, past the safety margin, so that only the day's purchases are new.
    services.SAFETY_MARGIN = timedelta(0)
    t0 = time.perf_counter()
    summary = services.recompute_kinds(program=program, period_kinds=KINDS)
    incremental_s = time.perf_counter() - t0
    _report(
        {
            "day_purchases": day_purchases,
            "post_s": round(post_s, 2),
            "incremental_s": round(incremental_s, 3),
            "kinds": {
                k: {"mode": v["mode"], "periods": v["total"]} for k, v in summary["kinds"].items()
            },
        }
    )


def child_dashboard(requests: int) -> None:
    """GET /staff/ as a staff user: the first request, then `requests` more."""
    _django()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.test.utils import override_settings
    from django.urls import reverse

    # Static file URLs without a collectstatic manifest (production serves hashed names, which
    # cost the same to build).
    storage = "django.contrib.staticfiles.storage.StaticFilesStorage"
    override_settings(STORAGES={**settings.STORAGES, "staticfiles": {"BACKEND": storage}}).enable()
    program = _program()
    user, _ = get_user_model().objects.get_or_create(
        username="bench-analytics", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    url = reverse("analytics:dashboard")
    params = {"program": program.slug}
    times = []
    for _ in range(requests + 1):
        t0 = time.perf_counter()
        response = client.get(url, params)
        times.append(time.perf_counter() - t0)
        if response.status_code != 200:
            raise SystemExit(f"GET {url}: {response.status_code}")
    _report(
        {
            "first_ms": round(times[0] * 1000, 1),
            "median_ms": round(statistics.median(times[1:]) * 1000, 1),
            "max_ms": round(max(times[1:]) * 1000, 1),
            "requests": requests,
            "bytes": len(response.content),
        }
    )


# Database ----------------------------------------------------------------------------------------


def _with_db(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def recreate(url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    if "bench" not in name:
        raise SystemExit(f"refusing to drop database {name!r}: its name must contain 'bench'")
    with psycopg.connect(_with_db(url, "postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def data_size(url: str) -> dict:
    with psycopg.connect(url, autocommit=True) as conn:
        counts = {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
            for table in ("members_member", "members_purchase", "members_pointsentry")
        }
        counts["database_mb"] = round(
            conn.execute("SELECT pg_database_size(current_database())").fetchone()[0] / 2**20
        )
    return counts


def bench_env(url: str) -> dict:
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": url,
            "DEBUG": "0",
            "SECRET_KEY": secrets.token_urlsafe(48),
            "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
            "SECURE_SSL_REDIRECT": "0",
            "LOG_LEVEL": "WARNING",
            "EMAIL_URL": "dummymail://",
            "DJANGO_SETTINGS_MODULE": "config.settings",
        }
    )
    env.pop("REDIS_URL", None)  # the dashboard's cache and throttles stay in the process
    return env


def run_child(args: list[str], env: dict) -> dict:
    out = subprocess.run(
        [PYTHON, __file__, *args], cwd=ROOT, env=env, check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    for line in out.splitlines():
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER) :])
    raise SystemExit(f"no result from {args[0]}:\n{out}")


def timed(command: list[str], env: dict) -> float:
    t0 = time.monotonic()
    subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - t0


# Main --------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=20_000)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument(
        "--day-purchases",
        type=int,
        default=0,
        help="purchases posted before the nightly run (default: the seeded year's daily average)",
    )
    parser.add_argument("--dashboard-requests", type=int, default=20)
    parser.add_argument(
        "--keep-db",
        action="store_true",
        help="measure again on the database of the last run (not recreated nor seeded: it holds "
        "the days of purchases the earlier runs posted)",
    )
    parser.add_argument(
        "--database-url",
        default="postgres://postgres@127.0.0.1:5432/loyalty_bench_analytics",
        help="recreated at each run; its name must contain 'bench'",
    )
    args = parser.parse_args()
    url = args.database_url
    env = bench_env(url)
    started = time.monotonic()

    migrate_s = seed_s = 0.0
    if not args.keep_db:
        recreate(url)
        migrate_s = timed([PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], env)
        seed_s = timed(
            [
                PYTHON,
                "manage.py",
                "seed_demo",
                "--members",
                str(args.members),
                "--months",
                str(args.months),
            ],
            env,
        )
    t0 = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
    vacuum_s = time.monotonic() - t0
    size = data_size(url)
    print(
        f"database: {size['members_member']} members, {size['members_purchase']} purchases, "
        f"{size['members_pointsentry']} ledger rows, {size['database_mb']} MB; migrate "
        f"{migrate_s:.1f} s, seed_demo {seed_s:.1f} s, VACUUM ANALYZE {vacuum_s:.1f} s"
    )

    full = run_child(["_full"], env)
    scan = full["scan_s"]
    full_s = full["together_s"]
    each_s = sum(k["s"] for k in full["kinds"].values())
    print(f"plain scan, sum of members_purchase.total_amount: {scan * 1000:.0f} ms")
    for kind, figures in full["kinds"].items():
        print(
            f"full recompute, {kind}: {figures['s']:.2f} s for {figures['periods']} periods "
            f"({figures['s'] / scan:.0f}x the scan)"
        )
    print(f"full recompute, each kind in its own run, summed: {each_s:.2f} s")
    print(
        f"full recompute, every kind in one run: {full_s:.2f} s ({full_s / scan:.0f}x the scan), "
        f"peak RSS {full['peak_rss_mb']} MB"
    )
    nightly = run_child(["_nightly", str(args.day_purchases)], env)
    print(
        f"a day of purchases: {nightly['day_purchases']} posted through the services in "
        f"{nightly['post_s']:.1f} s"
    )
    print(
        f"nightly incremental recompute, every kind: {nightly['incremental_s']:.2f} s "
        f"({nightly['kinds']}), peak RSS {nightly['peak_rss_mb']} MB"
    )
    dashboard = run_child(["_dashboard", str(args.dashboard_requests)], env)
    print(
        f"dashboard GET /staff/: first {dashboard['first_ms']} ms, then median "
        f"{dashboard['median_ms']} ms, slowest {dashboard['max_ms']} ms of "
        f"{dashboard['requests']}, peak RSS {dashboard['peak_rss_mb']} MB"
    )

    results = {
        "members": args.members,
        "months": args.months,
        "data": size,
        "seed_s": round(seed_s, 1),
        "scan_ms": round(scan * 1000, 1),
        "full": full["kinds"],
        "full_each_kind_s": round(each_s, 2),
        "full_s": round(full_s, 2),
        "full_x_scan": round(full_s / scan, 1),
        "full_peak_rss_mb": full["peak_rss_mb"],
        "nightly": nightly,
        "dashboard": dashboard,
        "cores": os.cpu_count(),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    prefix = f"analytics: members={args.members}"
    print(f"{prefix} scan_ms={results['scan_ms']}")
    for kind, figures in full["kinds"].items():
        print(f"{prefix} full_{kind}_s={figures['s']} periods={figures['periods']}")
    print(f"{prefix} full_s={results['full_s']} full_x_scan={results['full_x_scan']}")
    print(f"{prefix} nightly_incremental_s={nightly['incremental_s']}")
    print(
        f"{prefix} peak_rss_mb={max(full['peak_rss_mb'], nightly['peak_rss_mb'])} "
        f"dashboard_median_ms={dashboard['median_ms']}"
    )
    print(f"analytics: done in {time.monotonic() - started:.0f} s; figures in {RESULTS}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_full":
        child_full()
    elif len(sys.argv) > 2 and sys.argv[1] == "_nightly":
        child_nightly(int(sys.argv[2]))
    elif len(sys.argv) > 2 and sys.argv[1] == "_dashboard":
        child_dashboard(int(sys.argv[2]))
    else:
        sys.exit(main())
