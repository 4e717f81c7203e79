"""Job runs and their leases (loyalty/jobs.py): a run holds a lease that its worker renews; a
run whose worker died is shown as abandoned with what it had done, and the next run proceeds.

The first part drives the lease with a fake clock in this process (both databases). The second
starts real worker processes (`manage.py shell` and the job commands) against a database they
share with the test: a SQLite file, as `make run` uses, and the PostgreSQL test database. One
is killed half way through a nightly job; another holds SQLite's write lock in long batches
while its lease thread renews and a scheduler heartbeat sweeps next to it.
"""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings as django_settings
from django.urls import reverse
from django.utils import timezone

from config import nightly
from loyalty import tasks
from loyalty.jobs import abandon_expired_runs, record_job_run, save_progress, start_run
from loyalty.models import JobRun
from members import ledger
from members.models import PointsEntry
from tests.factories import (
    ProgramFactory,
    StaffUserFactory,
    StoreFactory,
    enrol,
    record_member_purchase,
)

ROOT = Path(__file__).resolve().parents[2]
LEASE = 120


class Clock:
    def __init__(self):
        self.now = timezone.now()

    def advance(self, seconds: float):
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture
def clock(monkeypatch):
    """A fake `timezone.now`, moved by the test."""
    fake = Clock()
    monkeypatch.setattr(timezone, "now", lambda: fake.now)
    return fake


@pytest.fixture
def lease(settings):
    settings.JOB_LEASE_SECONDS = LEASE
    return LEASE


def status_of(run: JobRun) -> str:
    run.refresh_from_db()
    return run.status


# 1. The lease, in this process --------------------------------------------------------------


@pytest.mark.django_db
def test_a_run_holds_a_lease_in_the_name_of_its_worker(clock, lease):
    started = clock.now
    with record_job_run("tests.job") as run:
        assert (run.heartbeat_at, run.lease_expires_at) == (
            started,
            started + timedelta(seconds=lease),
        )
        assert (run.worker_host, run.worker_pid) == (socket.gethostname(), os.getpid())
        clock.advance(30)
        run.summary = {"done": 1}
        save_progress(run)
        run.refresh_from_db()
        assert run.summary == {"done": 1}
        assert run.heartbeat_at == started + timedelta(seconds=30)
        assert run.lease_expires_at == started + timedelta(seconds=30 + lease)
    assert status_of(run) == JobRun.Status.SUCCEEDED


@pytest.mark.django_db
def test_a_run_whose_worker_stopped_is_abandoned_by_the_next_run_which_proceeds(clock, lease):
    # A worker that saved some progress, then died: nothing renews its lease any more.
    dead = start_run("tests.job")
    clock.advance(10)
    dead.summary = {"done": 3, "total": 9}
    save_progress(dead)
    last_heartbeat = clock.now

    clock.advance(lease)  # the lease ends exactly now: not expired yet
    with record_job_run("tests.other"):
        pass
    assert status_of(dead) == JobRun.Status.RUNNING
    assert not dead.is_lease_expired

    clock.advance(1)
    assert dead.is_lease_expired
    assert dead.shown_status == JobRun.Status.ABANDONED
    with record_job_run("tests.job") as nxt:
        dead.refresh_from_db()
        assert dead.status == JobRun.Status.ABANDONED
        nxt.summary = {"done": 9, "total": 9}
    assert status_of(nxt) == JobRun.Status.SUCCEEDED
    assert dead.summary == {"done": 3, "total": 9}
    assert dead.heartbeat_at == last_heartbeat
    assert dead.finished_at is None
    assert dead.error == ""


@pytest.mark.django_db
def test_the_scheduler_heartbeat_marks_expired_runs_abandoned(clock, lease):
    dead = start_run("members.release_pending_points")
    clock.advance(lease + 1)
    tasks.record_heartbeat()
    assert status_of(dead) == JobRun.Status.ABANDONED
    assert JobRun.objects.get(name="scheduler-heartbeat").status == JobRun.Status.SUCCEEDED


@pytest.mark.django_db
def test_a_run_that_keeps_renewing_is_never_abandoned_however_long_it_takes(clock, lease):
    with record_job_run("tests.job") as run:
        for step in range(20):  # 18 leases in all
            clock.advance(lease * 0.9)
            assert abandon_expired_runs() == 0
            assert status_of(run) == JobRun.Status.RUNNING
            run.summary = {"steps": step + 1}
            save_progress(run)
    assert status_of(run) == JobRun.Status.SUCCEEDED
    assert run.summary == {"steps": 20}


@pytest.mark.django_db
def test_a_worker_that_comes_back_after_being_abandoned_runs_again_and_ends(clock, lease):
    """A stalled worker (a long pause of its machine) is abandoned; if it renews after all,
    its run is running again, and it records its own outcome."""
    with record_job_run("tests.job") as run:
        clock.advance(lease + 1)
        assert abandon_expired_runs() == 1
        assert status_of(run) == JobRun.Status.ABANDONED
        save_progress(run)
        assert status_of(run) == JobRun.Status.RUNNING
        clock.advance(lease + 1)
        assert abandon_expired_runs() == 1
    assert status_of(run) == JobRun.Status.SUCCEEDED


@pytest.mark.django_db
def test_rows_without_a_lease_are_never_abandoned(clock, lease):
    row = JobRun.objects.create(name="tests.job", started_at=clock.now)
    clock.advance(lease * 100)
    assert abandon_expired_runs() == 0
    assert status_of(row) == JobRun.Status.RUNNING
    assert row.shown_status == JobRun.Status.RUNNING


# 2. A nightly job writes its progress batch by batch ----------------------------------------


def pending_purchases(clock, count: int):
    """A program whose `count` members each have one purchase due for release (3 days old, a
    return window of 1 day)."""
    program = ProgramFactory(return_window_days=1, backdating_days=30)
    store = StoreFactory(program=program)
    when = clock.now - timedelta(days=3)
    for i in range(count):
        member = enrol(program, email=f"m{i}@example.com")
        record_member_purchase(store, member, f"R-{i}", f"{10 * (i + 1)}.00", when)
    return program


def released_points(program) -> int:
    return sum(
        PointsEntry.objects.filter(program=program, kind="release", bucket="available").values_list(
            "points", flat=True
        )
    )


@pytest.mark.django_db
def test_a_nightly_job_records_the_batches_it_committed_before_it_failed(clock, lease, monkeypatch):
    program = pending_purchases(clock, 5)
    real_post_many = ledger.post_many
    calls = []

    def failing_post_many(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk full")
        return real_post_many(*args, **kwargs)

    monkeypatch.setattr(ledger, "post_many", failing_post_many)
    with pytest.raises(RuntimeError):
        nightly.run_job("release_pending_points", programs=[program], batch_size=2)

    run = JobRun.objects.get(name="members.release_pending_points")
    assert run.status == JobRun.Status.FAILED
    done = run.summary[program.slug]
    # Two batches of two members committed (10 + 20 + 30 + 40 points), the third rolled back.
    assert (done["batches"], done["members"], done["purchases"], done["points"]) == (2, 4, 4, 100)
    assert released_points(program) == 100


@pytest.mark.django_db
def test_a_long_nightly_job_renews_its_lease_at_each_batch(clock, lease, monkeypatch):
    """Each batch takes most of a lease; the run, swept before every batch, stays running."""
    program = pending_purchases(clock, 6)
    real_post_many = ledger.post_many
    seen = []

    def slow_post_many(*args, **kwargs):
        clock.advance(lease * 0.9)
        abandon_expired_runs()
        seen.append(JobRun.objects.get(name="members.release_pending_points").status)
        return real_post_many(*args, **kwargs)

    monkeypatch.setattr(ledger, "post_many", slow_post_many)
    nightly.run_job("release_pending_points", programs=[program], batch_size=1)
    assert seen == [JobRun.Status.RUNNING] * 6
    run = JobRun.objects.get(name="members.release_pending_points")
    assert run.status == JobRun.Status.SUCCEEDED
    assert run.summary[program.slug]["points"] == released_points(program) == 210


# 3. What staff see --------------------------------------------------------------------------


def changelist(client, language: str, **params):
    url = reverse("admin:loyalty_jobrun_changelist")
    return client.get(url, params, HTTP_ACCEPT_LANGUAGE=language)


@pytest.mark.django_db
def test_the_admin_shows_abandoned_runs_with_their_last_heartbeat_and_progress(
    admin_client, clock, lease
):
    swept = start_run("members.expire_points")
    swept.summary = {"shop": {"batches": 2, "points": 1234}}
    save_progress(swept)
    clock.advance(lease + 1)
    abandon_expired_runs()
    # Expired as well, but not swept yet: shown abandoned all the same.
    expired = start_run("members.requalify_tiers")
    live = start_run("members.notify_members")
    with record_job_run("members.release_pending_points"):
        pass
    clock.advance(lease + 1)
    save_progress(live)  # its worker renews the lease
    assert status_of(expired) == JobRun.Status.RUNNING  # no run started since it expired

    page = changelist(admin_client, "en")
    assert page.status_code == 200
    rows = {run.pk: run for run in page.context["cl"].result_list}
    assert len(rows) == 4
    text = page.text
    assert text.count(">Abandoned</td>") == 2
    assert text.count(">Running</td>") == 1
    assert text.count(">Succeeded</td>") == 1
    assert "has not renewed it for 120 seconds" in text

    abandoned = changelist(admin_client, "en", status="abandoned").context["cl"].result_list
    assert {run.pk for run in abandoned} == {swept.pk, expired.pk}
    running = changelist(admin_client, "en", status="running").context["cl"].result_list
    assert [run.pk for run in running] == [live.pk]

    french = changelist(admin_client, "fr").text
    assert french.count(">Abandonnée</td>") == 2
    assert french.count(">En cours</td>") == 1

    detail = admin_client.get(
        reverse("admin:loyalty_jobrun_change", args=[swept.pk]), HTTP_ACCEPT_LANGUAGE="en"
    )
    assert detail.status_code == 200
    text = detail.text
    assert "Abandoned" in text
    assert "Its worker stopped renewing the run&#x27;s lease" in text
    assert f"{socket.gethostname()}, process {os.getpid()}" in text
    assert "&quot;points&quot;: 1234" in text
    live_detail = admin_client.get(reverse("admin:loyalty_jobrun_change", args=[live.pk]))
    assert "Its worker stopped" not in live_detail.text


@pytest.mark.django_db
def test_the_recompute_progress_ends_as_failed_when_its_run_was_abandoned(admin_client, lease):
    since = timezone.now() - timedelta(seconds=5)
    run = start_run("analytics.recompute_kpis", user=StaffUserFactory())
    run.summary = {"program": "shop", "done": 3, "total": 10, "kinds": {}}
    save_progress(run)
    url = reverse("admin:analytics_kpirefresh_progress_json")
    params = {"since": since.isoformat(), "runs": "1"}
    admin_client.force_login(run.triggered_by)
    assert admin_client.get(url, params).json()["finished"] is False

    JobRun.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    progress = admin_client.get(url, params).json()
    assert (progress["finished"], progress["failed"]) == (True, True)
    assert progress["runs"][0]["status"] == JobRun.Status.ABANDONED


# 4. Real worker processes -------------------------------------------------------------------

WORKER_LEASE = 2


@pytest.fixture(scope="module")
def migrated_sqlite_file(tmp_path_factory) -> Path:
    """A SQLite file with every migration applied, copied by each test that uses one."""
    path = tmp_path_factory.mktemp("jobs-sqlite") / "template.sqlite3"
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0"],
        cwd=ROOT,
        env=worker_env(f"sqlite:///{path}"),
        check=True,
        capture_output=True,
        timeout=180,
    )
    return path


def worker_env(database_url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "CELERY_TASK_ALWAYS_EAGER"}
    env.update(
        DEBUG="1",
        DATABASE_URL=database_url,
        JOB_LEASE_SECONDS=str(WORKER_LEASE),
        PYTHONUNBUFFERED="1",
    )
    return env


def url_of_the_test_database() -> str:
    db = django_settings.DATABASES["default"]
    # Never let the processes loose on a real database: pytest-django renamed it test_*.
    assert db["NAME"].startswith("test_"), db["NAME"]
    auth = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    host = quote(db["HOST"] or "localhost", safe="")
    return f"postgres://{auth}@{host}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture(params=["sqlite-file", pytest.param("postgresql", marks=pytest.mark.postgres)])
def worker_db(request, tmp_path):
    """The environment of worker processes sharing a database with the test: a SQLite file
    (WAL, IMMEDIATE transactions, as in development), or the PostgreSQL test database."""
    if request.param == "postgresql":
        request.getfixturevalue("transactional_db")
        return worker_env(url_of_the_test_database())
    path = tmp_path / "db.sqlite3"
    template = sqlite3.connect(request.getfixturevalue("migrated_sqlite_file"))
    copy = sqlite3.connect(path)
    with template, copy:
        template.backup(copy)
    template.close()
    copy.close()
    return worker_env(f"sqlite:///{path}")


def shell_command(code: str) -> list[str]:
    prelude = "import json, os\nARGS = json.loads(os.environ['TEST_ARGS'])\n"
    return [
        sys.executable,
        "manage.py",
        "shell",
        "--no-imports",
        "-c",
        prelude + textwrap.dedent(code),
    ]


def run_script(env: dict, code: str, **args):
    """Run `code` in a worker process (`manage.py shell`); the JSON of its last line."""
    done = subprocess.run(
        shell_command(code),
        cwd=ROOT,
        env={**env, "TEST_ARGS": json.dumps(args)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def start_script(env: dict, code: str, log: Path, **args) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(
            shell_command(code),
            cwd=ROOT,
            env={**env, "TEST_ARGS": json.dumps(args)},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


SEED = """
from datetime import timedelta
from django.utils import timezone
from members.models import Purchase
from tests.factories import ProgramFactory, StoreFactory, enrol, record_member_purchase

program = ProgramFactory(slug="killed", return_window_days=1, backdating_days=30)
store = StoreFactory(program=program)
when = timezone.now() - timedelta(days=3)
for i in range(7):
    member = enrol(program, email=f"k{i}@example.com")
    record_member_purchase(store, member, f"K-{i}", f"{10 * (i + 1)}.00", when)
points = Purchase.objects.filter(program=program).values_list("points_earned", flat=True)
print(json.dumps({"slug": program.slug, "points": sum(points)}))
"""

# The release job in batches of two, paused for good inside its third batch's transaction (after
# locking the batch's members): the test kills it there.
KILLED_WORKER = """
import time
from pathlib import Path
from django.core.management import call_command
from members import ledger

real_post_many = ledger.post_many
calls = []

def post_many(*args, **kwargs):
    calls.append(1)
    if len(calls) == 3:
        Path(ARGS["paused"]).touch()
        time.sleep(3600)
    return real_post_many(*args, **kwargs)

ledger.post_many = post_many
call_command("release_points", "--program", ARGS["slug"], "--batch-size", "2")
"""

RUNS = """
from loyalty.models import JobRun
from members.models import PointsEntry, Purchase

if ARGS.get("heartbeat"):
    from loyalty import tasks
    tasks.record_heartbeat()
runs = [
    {
        "status": r.status,
        "summary": r.summary,
        "pid": r.worker_pid,
        "heartbeat": r.heartbeat_at.timestamp() if r.heartbeat_at else None,
        "lease": r.lease_expires_at.timestamp() if r.lease_expires_at else None,
        "started": r.started_at.timestamp(),
        "finished": r.finished_at.timestamp() if r.finished_at else None,
    }
    for r in JobRun.objects.filter(name=ARGS["name"]).order_by("pk")
]
releases = PointsEntry.objects.filter(kind="release", bucket="available")
print(json.dumps({
    "runs": runs,
    "released_points": sum(releases.values_list("points", flat=True)),
    "release_rows": sorted(releases.values_list("purchase_id", flat=True)),
    "purchases": sorted(Purchase.objects.values_list("pk", flat=True)),
    "unreleased": Purchase.objects.filter(released_at__isnull=True).count(),
}))
"""


def test_a_killed_nightly_job_is_abandoned_with_its_progress_and_the_next_run_completes_it(
    worker_db, tmp_path
):
    env = worker_db
    seeded = run_script(env, SEED)
    name = "members.release_pending_points"
    paused = tmp_path / "paused"
    worker = start_script(
        env, KILLED_WORKER, tmp_path / "worker.log", slug=seeded["slug"], paused=str(paused)
    )
    try:
        wait_for(lambda: paused.exists() or worker.poll() is not None, 60, "the third batch")
        assert worker.poll() is None, (tmp_path / "worker.log").read_text()
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)

    [killed] = run_script(env, RUNS, name=name)["runs"]
    assert killed["status"] == JobRun.Status.RUNNING
    assert killed["pid"] == worker.pid
    # Two batches of two members were committed and written to the run as they went.
    progress = killed["summary"][seeded["slug"]]
    assert (progress["batches"], progress["purchases"], progress["points"]) == (2, 4, 100)

    # Once the lease has expired, the scheduler heartbeat shows the run abandoned.
    wait_for(lambda: time.time() > killed["lease"] + 0.2, WORKER_LEASE + 5, "the lease to end")
    state = run_script(env, RUNS, name=name, heartbeat=True)
    [abandoned] = state["runs"]
    assert abandoned["status"] == JobRun.Status.ABANDONED
    assert abandoned["summary"] == killed["summary"]
    assert abandoned["finished"] is None
    assert state["released_points"] == 100  # the third batch was rolled back with the worker

    # The next run proceeds and releases what is left, once.
    nxt = subprocess.run(
        [sys.executable, "manage.py", "release_points", "--program", seeded["slug"]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert nxt.returncode == 0, nxt.stderr
    summary = json.loads(nxt.stdout)[seeded["slug"]]
    assert (summary["purchases"], summary["points"]) == (3, seeded["points"] - 100)

    check = subprocess.run(
        [sys.executable, "manage.py", "check_ledger"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    final = run_script(env, RUNS, name=name)
    assert [run["status"] for run in final["runs"]] == ["abandoned", "succeeded"]
    assert final["released_points"] == seeded["points"] == 280
    assert final["release_rows"] == final["purchases"]  # each purchase released exactly once
    assert final["unreleased"] == 0


# A job of rounds that each hold the database's write lock on SQLite (an IMMEDIATE transaction)
# for a sixth of the lease, and never save progress: only the lease thread renews the lease.
LONG_RUN = """
import time
from django.db import transaction
from loyalty.jobs import record_job_run
from loyalty.models import Program

with record_job_run("tests.long_run") as run:
    for i in range(ARGS["rounds"]):
        with transaction.atomic():
            Program.objects.filter(pk=0).update(name="held")
            time.sleep(ARGS["hold"])
        time.sleep(ARGS["gap"])
        run.summary = {"rounds": i + 1}
print(json.dumps({"pk": run.pk}))
"""

# The scheduler heartbeat, every quarter second until told to stop; each heartbeat first marks
# abandoned the runs whose lease has expired. Prints the statuses of the long run it saw, and
# looks once more after the stop (the run has ended by then).
HEARTBEATS = """
import time
from pathlib import Path
from loyalty import services
from loyalty.models import JobRun

def look():
    seen.update(JobRun.objects.filter(name="tests.long_run").values_list("status", flat=True))


seen, beats = set(), 0
while not Path(ARGS["stop"]).exists():
    services.record_heartbeat()
    beats += 1
    look()
    time.sleep(0.25)
look()  # told to stop once the run ended: its final status, whenever the last beat fell
print(json.dumps({"beats": beats, "seen": sorted(seen)}))
"""


def test_a_long_run_renewed_by_its_lease_thread_is_not_abandoned_by_a_sweeping_scheduler(
    worker_db, tmp_path
):
    env = worker_db
    stop = tmp_path / "stop"
    beat = start_script(env, HEARTBEATS, tmp_path / "beat.log", stop=str(stop))
    try:
        # 12 rounds of 0.5 s: three leases of 2 s.
        run_script(env, LONG_RUN, rounds=12, hold=WORKER_LEASE / 6, gap=0.15)
    finally:
        stop.touch()
        beat.wait(timeout=60)
    output = (tmp_path / "beat.log").read_text()
    beats = json.loads(output.strip().splitlines()[-1])
    assert beats["seen"] == [JobRun.Status.RUNNING, JobRun.Status.SUCCEEDED], output
    assert beats["beats"] >= 8

    [run] = run_script(env, RUNS, name="tests.long_run")["runs"]
    assert run["status"] == JobRun.Status.SUCCEEDED
    assert run["summary"] == {"rounds": 12}
    # Renewed to the end by the thread alone.
    assert run["heartbeat"] - run["started"] > 2 * WORKER_LEASE
    assert run["finished"] - run["heartbeat"] < WORKER_LEASE
