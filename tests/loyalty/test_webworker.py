"""The web worker class of bin/serve (loyalty/webworker.py) under a real gunicorn: a worker with
no free thread leaves new connections to the others.

Gunicorn serves `app` below (no Django: each request sleeps, then answers its worker's pid and
when it ran) with two workers of one thread. Four clients connect at once and each posts two
requests on its kept-alive connection. With the balanced worker, each worker holds two of the
connections and never runs two requests at once; gunicorn's plain threaded worker may take all
four connections on the first worker to wake and queue them behind its one thread.
"""

import http.client
import itertools
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SLEEP = 0.3


def app(environ, start_response):
    began = time.monotonic()
    time.sleep(SLEEP)
    body = f"{os.getpid()} {began} {time.monotonic()}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server():
    port = _free_port()
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "tests.loyalty.test_webworker:app",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--threads",
            "1",
            "--worker-class",
            "loyalty.webworker.BalancedThreadWorker",
            "--keep-alive",
            "30",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        booted: set[str] = set()
        # Wait until both workers answer: connect one at a time until two pids are seen.
        while len(booted) < 2:
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "gunicorn did not start two workers"
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                connection.request("GET", "/")
                booted.add(connection.getresponse().read().split()[0].decode())
                connection.close()
            except OSError:
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_connections_spread_over_workers_with_a_free_thread(server):
    results: dict[int, list[tuple[str, float, float]]] = {}
    start = threading.Barrier(4)

    def client(n):
        start.wait()
        connection = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
        rows = []
        for _ in range(2):
            connection.request("GET", "/")
            pid, began, ended = connection.getresponse().read().decode().split()
            rows.append((pid, float(began), float(ended)))
        connection.close()
        results[n] = rows

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 4

    # A kept-alive connection stays with the worker that accepted it.
    owner = {n: {pid for pid, _, _ in rows} for n, rows in results.items()}
    assert all(len(pids) == 1 for pids in owner.values()), owner
    per_worker: dict[str, int] = {}
    for (pid,) in owner.values():
        per_worker[pid] = per_worker.get(pid, 0) + 1
    assert sorted(per_worker.values()) == [2, 2], per_worker

    # Each worker ran one request at a time (its one thread), back to back.
    for pid in per_worker:
        spans = sorted((b, e) for rows in results.values() for p, b, e in rows if p == pid)
        assert len(spans) == 4
        assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans)), spans
