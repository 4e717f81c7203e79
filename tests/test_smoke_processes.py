"""Smoke test of the production processes, started with the very commands docker-compose runs.

The commands are read from docker-compose.yml (`bin/serve release`, `web`, `worker`, `beat`) and
run as subprocesses with DEBUG off, against the test database (committed, hence the
transactional test) and the Redis of REDIS_URL. Proves: the web server answers /healthz and the
home page with its hashed static files; beat -> Redis -> worker -> database writes the
heartbeat; the container health check command works; SIGTERM stops every process cleanly.
"""

import contextlib
import json
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml
from django.conf import settings

from config.celery import app as celery_app
from loyalty.models import JobRun

pytestmark = [
    pytest.mark.smoke,
    pytest.mark.postgres,
    pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs Redis (set REDIS_URL)"),
]

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
START_TIMEOUT = 30
STOP_TIMEOUT = 25  # above gunicorn's graceful timeout (bin/serve: 20 s)
SERVICES = ("migrate", "web", "worker", "beat")


def compose_commands() -> dict[str, list[str]]:
    """The command of each app service of docker-compose.yml, and the web health check's."""
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    commands = {name: shlex.split(services[name]["command"]) for name in SERVICES}
    test = services["web"]["healthcheck"]["test"]
    assert test[0] == "CMD", test
    commands["healthcheck"] = test[1:]
    return commands


def dockerfile_commands() -> list[list[str]]:
    """The exec-form commands of the Dockerfile: its HEALTHCHECK's, then its default CMD."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    return [json.loads(argv) for argv in re.findall(r"\bCMD (\[.*\])", dockerfile)]


def absolute(argv: list[str]) -> list[str]:
    """bin/serve relative to the repository root, as in the image's working directory."""
    return [str(ROOT / argv[0]), *argv[1:]] if "/" in argv[0] else argv


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url_of_the_test_database() -> str:
    db = settings.DATABASES["default"]
    # Never let the processes loose on a real database: pytest-django renamed it test_*.
    assert db["NAME"].startswith("test_"), db["NAME"]
    auth = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    host = quote(db["HOST"] or "localhost", safe="")
    return f"postgres://{auth}@{host}:{db['PORT'] or 5432}/{db['NAME']}"


def queued_tasks() -> int:
    """Messages waiting in the default queue of the broker (REDIS_URL) right now."""
    with celery_app.connection_for_read() as conn:
        declared = conn.default_channel.queue_declare(queue=celery_app.conf.task_default_queue)
    return declared.message_count


def http_get(url: str) -> tuple[int, Message, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


class Processes:
    """The started processes, each in its own session (process group), output in a file."""

    def __init__(self, env: dict, log_dir: Path):
        self.env = env
        self.log_dir = log_dir
        self.commands = compose_commands()
        self.started: dict[str, subprocess.Popen] = {}

    def start(self, name: str) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115
        with log:
            process = subprocess.Popen(
                absolute(self.commands[name]),
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started[name] = process
        return process

    def output(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def assert_running(self):
        for name, process in self.started.items():
            assert process.poll() is None, (
                f"{name} exited with {process.returncode}:\n{self.output(name)}"
            )

    def stop(self, name: str) -> int | None:
        """SIGTERM the process, wait for it and its group; SIGKILL whatever is left.

        Returns its exit status, or None when it had to be killed.
        """
        process = self.started[name]
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            returncode = process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            returncode = None
        # Children (gunicorn and celery pool processes) must be gone too.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            returncode = None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
        return returncode

    def stop_all(self) -> dict[str, int | None]:
        # Beat first, so that the worker is not left a heartbeat in the queue.
        order = [name for name in ("beat", "worker", "web") if name in self.started]
        return {name: self.stop(name) for name in order}

    def run(self, name: str, **env_vars: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            absolute(self.commands[name]),
            cwd=ROOT,
            env={**self.env, **env_vars},
            capture_output=True,
            text=True,
            timeout=120,
        )

    def print_outputs(self):
        for name in self.started:
            command = shlex.join(self.commands[name])
            print(f"----- {command} -----\n{self.output(name)}")


@pytest.fixture
def processes(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "CELERY_TASK_ALWAYS_EAGER"}
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(64),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECURE_SSL_REDIRECT="0",
        DATABASE_URL=database_url_of_the_test_database(),
        REDIS_URL=os.environ["REDIS_URL"],
        HEARTBEAT_SECONDS="1",
        BEAT_SCHEDULE=str(tmp_path / "beat" / "celerybeat-schedule"),
        STATIC_ROOT=str(tmp_path / "static"),
        BIND=f"127.0.0.1:{free_port()}",
        WEB_CONCURRENCY="2",
        PYTHONUNBUFFERED="1",
    )
    started = Processes(env, tmp_path)
    try:
        yield started
    finally:
        started.stop_all()
        # Shown by pytest only when the test fails.
        started.print_outputs()


@pytest.mark.django_db(transaction=True)
def test_production_processes_serve_and_run_scheduled_jobs(processes):
    env = processes.env
    base_url = f"http://{env['BIND']}"

    # What runs below is what docker-compose and the image run.
    assert processes.commands == {
        "migrate": ["bin/serve", "release"],
        "web": ["bin/serve", "web"],
        "worker": ["bin/serve", "worker"],
        "beat": ["bin/serve", "beat"],
        "healthcheck": ["bin/serve", "healthcheck"],
    }
    assert dockerfile_commands() == [["bin/serve", "healthcheck"], ["bin/serve", "web"]]

    # Messages some earlier run left in the shared queue would be run by our worker too: only
    # heartbeats beyond that many can have come from our beat.
    left_over = queued_tasks()

    # The worker and beat do not need the static files: start them while `release` runs.
    processes.start("worker")
    processes.start("beat")
    release = processes.run("migrate")
    assert release.returncode == 0, release.stdout + release.stderr
    assert (Path(env["STATIC_ROOT"]) / "staticfiles.json").is_file()
    processes.start("web")

    # /healthz: 200 with the database and the broker answering, once gunicorn is up.
    deadline = time.monotonic() + START_TIMEOUT
    status, content = None, b""
    while time.monotonic() < deadline:
        processes.assert_running()
        try:
            status, headers, content = http_get(f"{base_url}/healthz")
        except OSError:  # not listening yet
            status = None
        if status == 200:
            break
        time.sleep(0.3)
    assert status == 200, content.decode(errors="replace")[:2000]
    assert headers["Content-Type"] == "application/json"
    body = json.loads(content)
    assert body["status"] == "ok"
    assert body["database"] == "ok"
    assert body["broker"] == "ok"

    # The home page renders with DEBUG off: whitenoise's manifest names the hashed stylesheet,
    # and gunicorn serves it.
    status, headers, content = http_get(f"{base_url}/")
    assert status == 200, content.decode(errors="replace")[:2000]
    stylesheet = re.search(r'href="(/static/css/site\.[0-9a-f]{12}\.css)"', content.decode())
    assert stylesheet, content.decode()[:2000]
    status, headers, content = http_get(base_url + stylesheet.group(1))
    assert status == 200
    assert headers["Content-Type"].startswith("text/css")
    assert "immutable" in headers["Cache-Control"]

    # beat -> Redis -> worker -> database: beat sends the heartbeat every second.
    heartbeats = JobRun.objects.filter(name="scheduler-heartbeat", status=JobRun.Status.SUCCEEDED)
    deadline = time.monotonic() + START_TIMEOUT
    while heartbeats.count() <= left_over and time.monotonic() < deadline:
        processes.assert_running()
        time.sleep(0.5)
    assert heartbeats.count() > left_over
    assert "Sending due task scheduler-heartbeat" in processes.output("beat")
    assert "loyalty.tasks.record_heartbeat" in processes.output("worker")

    # The image's HEALTHCHECK command, against this server and against a closed port.
    check = processes.run("healthcheck")
    assert check.returncode == 0, check.stdout + check.stderr
    closed = processes.run("healthcheck", BIND=f"127.0.0.1:{free_port()}")
    assert closed.returncode != 0
    assert "unhealthy" in closed.stderr

    # SIGTERM reaches each program (bin/serve execs it), which stops cleanly with its children;
    # had bin/serve not exec'd, the shell would die and leave the program running.
    assert processes.stop_all() == {"beat": 0, "worker": 0, "web": 0}


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_the_nightly_chain_from_redis(processes):
    """The nightly chain sent through Redis to the compose worker: it releases, expires,
    requalifies and notifies, each job recorded, and the ledger stays consistent."""
    from datetime import timedelta
    from decimal import Decimal

    from django.utils import timezone

    from config.nightly import NIGHTLY_ORDER
    from members import ledger, services
    from members.models import Member, MemberNotification, PointsEntry, TierChange
    from tests.factories import ProgramFactory, StoreFactory, TierFactory, enrol

    program = ProgramFactory(return_window_days=1)
    TierFactory(program=program, name="Base", rank=0)
    gold = TierFactory(program=program, name="Gold", rank=1, qualify_threshold=Decimal("100"))
    store = StoreFactory(program=program)
    member = enrol(program, email="nightly@example.fr")
    services.record_purchase(
        store=store,
        receipt_id="N-1",
        amount=Decimal("150.00"),
        currency="EUR",
        occurred_at=timezone.now() - timedelta(days=2),
        card_number=member.card_number,
    )
    member.refresh_from_db()
    assert member.points_pending == 150
    assert member.tier_id == gold.pk  # upgraded at once, by the purchase
    # An earlier tier set by hand that ended: the worker must bring the member back to Gold.
    Member.objects.filter(pk=member.pk).update(
        tier_id=program.tiers.get(rank=0).pk,
        tier_manual_until=timezone.localdate() - timedelta(days=2),
    )

    processes.start("worker")
    result = celery_app.send_task("members.tasks.run_nightly")
    assert result.id
    runs = JobRun.objects.filter(name__startswith="members.", status=JobRun.Status.SUCCEEDED)
    deadline = time.monotonic() + START_TIMEOUT * 2
    # Every job of the chain, those of the apps to the right of members included (vouchers,
    # segments, lifecycle bonuses, KPI snapshots), each recorded as a run.
    chain = tuple(NIGHTLY_ORDER)
    assert chain[0] == "release_pending_points"
    assert chain[-1] == "notify_members"
    while runs.count() < len(chain) and time.monotonic() < deadline:
        processes.assert_running()
        assert not JobRun.objects.filter(
            name__startswith="members.", status=JobRun.Status.FAILED
        ).exists(), list(JobRun.objects.values("name", "error"))
        time.sleep(0.5)
    assert sorted(runs.values_list("name", flat=True)) == sorted(f"members.{n}" for n in chain)
    member.refresh_from_db()
    assert (member.points_pending, member.points_available) == (0, 150)
    assert PointsEntry.objects.filter(member=member, kind="release").count() == 2
    assert member.tier_id == gold.pk
    # Gold is above the tier the member was left in: an upgrade, which also ends the manual tier.
    assert TierChange.objects.filter(member=member, reason="requalification").count() == 1
    assert member.tier_manual_until is None
    # The emails were queued by the chain and sent by send_notifications tasks.
    sent = MemberNotification.objects.filter(member=member, sent_at__isnull=False)
    # Each email is marked sent as it goes out: wait for both, not only the first.
    while sent.count() < 2 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert sent.count() == 2  # the upgrade on the purchase, then the night's requalification
    assert "members.tasks.send_notifications" in processes.output("worker")
    assert "members.tasks.run_nightly" in processes.output("worker")
    assert ledger.find_mismatches() == []
    assert processes.stop_all() == {"worker": 0}
