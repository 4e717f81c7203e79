"""The web server's worker (`config.gunicorn_worker`): new connections go to the worker that
holds the fewest, so that kept-alive tills spread evenly over the workers."""

import http.client
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from config import gunicorn_worker
from config.gunicorn_worker import BalancedThreadWorker, fewer_elsewhere

from ..test_smoke_processes import free_port

ROOT = Path(__file__).resolve().parents[2]
GUNICORN = Path(sys.executable).parent / "gunicorn"


@pytest.mark.parametrize(
    ("slot", "pids", "conns", "dead", "fewest"),
    [
        (0, [10, 11, 12], [0, 0, 0], set(), None),  # all idle: everyone listens
        (0, [10, 11, 12], [1, 0, 0], set(), 0),  # another holds fewer
        (1, [10, 11, 12], [1, 0, 0], set(), None),
        (0, [10, 11, 12], [5, 5, 6], set(), None),  # a tie with the fewest
        (2, [10, 11, 12], [5, 5, 6], set(), 5),
        (0, [10, 11, 12], [6, 4, 5], set(), 4),  # the fewest of those that hold fewer
        (0, [10, 0, 12], [3, 0, 3], set(), None),  # a free slot does not count
        (0, [10, 11, 12], [4, 0, 2], {11}, 2),  # nor one left by a dead worker
    ],
)
def test_a_worker_sees_whether_another_live_worker_holds_fewer_connections(
    slot, pids, conns, dead, fewest
):
    assert fewer_elsewhere(slot, pids, conns, alive=lambda pid: pid not in dead) == fewest


def test_a_worker_leaves_the_count_when_it_shuts_down():
    """A worker recycled (--max-requests) or stopped drains its connections for a while; were
    it still counted, its few connections would keep every other worker from listening."""
    worker = BalancedThreadWorker.__new__(BalancedThreadWorker)  # no server around it
    worker._nr_conns, worker._limit, worker._accepting, worker.sockets = 0, 1000, False, []
    worker._slot = slot = gunicorn_worker.claim_slot(os.getpid())
    try:
        worker.nr_conns = 2
        assert gunicorn_worker._conns[slot] == 2
        # Pausing while others hold fewer connections: still counted.
        worker.alive = True
        worker.set_accept_enabled(False)
        assert gunicorn_worker._pids[slot] == os.getpid()
        # Shutting down: out of the count.
        worker.alive = False
        worker.set_accept_enabled(False)
        assert (gunicorn_worker._pids[slot], worker._slot) == (0, None)
        worker.nr_conns = 1  # draining publishes nothing
        assert gunicorn_worker._conns[slot] == 0
    finally:
        gunicorn_worker.release_slot(slot)


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
                "config.gunicorn_worker.BalancedThreadWorker",
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


def _ask(till: http.client.HTTPConnection) -> int:
    """The pid of the worker answering on this till's connection (reopened if the server
    closed it: `http.client` reconnects on the next request)."""
    try:
        till.request("GET", "/")
        return int(till.getresponse().read())
    except (http.client.RemoteDisconnected, ConnectionError):
        till.close()
        till.request("GET", "/")
        return int(till.getresponse().read())


def test_open_connections_move_to_a_worker_that_was_recycled(server):
    """A worker stopped (as after --max-requests) hands its tills to the others while the
    arbiter boots its replacement; the crowded workers then close a connection after an
    answer until the spread is even again."""
    tills = [http.client.HTTPConnection("127.0.0.1", server, timeout=10) for _ in range(9)]
    try:
        pids = []
        for till in tills:
            pids.append(_ask(till))
            time.sleep(0.05)
        victim = pids[0]
        os.kill(victim, signal.SIGTERM)
        spread = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            # A few rounds of purchases: each till on the connection it holds.
            pids = [_ask(till) for till in tills]
            spread = Counter(pids)
            if victim not in spread and sorted(spread.values()) == [3, 3, 3]:
                # Stable: another round keeps every till on its worker.
                assert [_ask(till) for till in tills] == pids
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"never spread evenly again: {spread}")
    finally:
        for till in tills:
            till.close()
