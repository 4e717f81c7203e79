"""The web server's worker (`loyalty.gunicorn_worker`): new connections go to the worker that
holds the fewest, so that kept-alive tills spread evenly over the workers."""

import http.client
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from loyalty.gunicorn_worker import least_loaded

from ..test_smoke_processes import free_port

ROOT = Path(__file__).resolve().parents[2]
GUNICORN = Path(sys.executable).parent / "gunicorn"


@pytest.mark.parametrize(
    ("slot", "pids", "conns", "dead", "expected"),
    [
        (0, [10, 11, 12], [0, 0, 0], set(), True),  # all idle: everyone listens
        (0, [10, 11, 12], [1, 0, 0], set(), False),  # another holds fewer
        (1, [10, 11, 12], [1, 0, 0], set(), True),
        (0, [10, 11, 12], [5, 5, 6], set(), True),  # a tie with the fewest
        (2, [10, 11, 12], [5, 5, 6], set(), False),
        (0, [10, 0, 12], [3, 0, 3], set(), True),  # a free slot does not count
        (0, [10, 11, 12], [3, 0, 3], {11}, True),  # nor one left by a dead worker
        (0, [10, 11, 12], [3, 0, 3], {12}, False),
    ],
)
def test_a_worker_listens_while_no_live_worker_holds_fewer_connections(
    slot, pids, conns, dead, expected
):
    assert least_loaded(slot, pids, conns, alive=lambda pid: pid not in dead) is expected


@pytest.fixture
def server(tmp_path):
    """Gunicorn with 3 balanced workers of 2 threads serving `tests.web_worker_pid`."""
    port = free_port()
    log = tmp_path / "gunicorn.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                str(GUNICORN),
                "tests.loyalty.web_worker_pid:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "3",
                "--threads",
                "2",
                "--worker-class",
                "loyalty.gunicorn_worker.BalancedThreadWorker",
                "--keep-alive",
                "30",
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    try:
        deadline = time.monotonic() + 20
        while log.read_text().count("Booting worker") < 3:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        time.sleep(0.5)  # each worker in its event loop
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_kept_alive_connections_spread_evenly_over_the_workers(server):
    """Nine tills connect one after another and keep their connections: three per worker. (The
    plain threaded worker leaves it to whichever worker wakes first: 12, 3 and 1 of 16
    connections were seen.)"""
    tills = []
    for _ in range(9):
        conn = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
        conn.request("GET", "/")
        response = conn.getresponse()
        assert response.status == 200
        tills.append((conn, int(response.read())))
        # The answer can reach the till before the worker's event loop has turned once since
        # the accept (when it stops listening): tills do not connect within microseconds.
        time.sleep(0.05)
    try:
        per_worker = Counter(pid for _conn, pid in tills)
        assert sorted(per_worker.values()) == [3, 3, 3], per_worker
        # The connections stay with their worker.
        for conn, pid in tills:
            conn.request("GET", "/")
            assert int(conn.getresponse().read()) == pid
    finally:
        for conn, _pid in tills:
            conn.close()
