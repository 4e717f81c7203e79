"""The gunicorn worker that `bin/serve web` runs: gunicorn's threaded worker (a till's connection
is kept alive between purchases), except that a new connection goes to the worker holding the
fewest.

Gunicorn's workers share one listening socket and the first one awake accepts. A kept-alive
connection then stays with that worker for good, so the tills connecting together after a
restart could pile up on one worker (12, 3 and 1 of 16 connections were seen on three workers),
which the GIL caps at one core while the others idle. Here each worker publishes how many
connections it holds, in memory shared by every worker of the server, and listens for new ones
only while no other live worker holds fewer. The least loaded worker is always listening, so
a new connection never waits for a busy one (accepting only while a thread is free would leave
connections queued for seconds while every thread is busy). A
worker holding two connections more than another closes one after its answer, so the
connections open move too (after a worker is recycled, its tills reconnect to the others
while it boots).
"""

import multiprocessing
import os
from collections.abc import Callable, Sequence

from gunicorn.workers.gthread import ThreadWorker

SLOTS = 64  # workers of one server at most, replacements included (their slots are reused)

# Created when gunicorn's master imports this module (to load the worker class, before it
# forks any worker), so that every worker of the server maps the same memory.
_pids = multiprocessing.RawArray("q", SLOTS)  # the pid holding each slot, 0 when free
_conns = multiprocessing.RawArray("q", SLOTS)  # that worker's open connections
_used = multiprocessing.RawValue("i", 0)  # slots ever claimed: the ones worth reading
_claim = multiprocessing.Lock()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fewer_elsewhere(
    slot: int,
    pids: Sequence[int],
    conns: Sequence[int],
    alive: Callable[[int], bool] = pid_alive,
) -> int | None:
    """The fewest connections that another live worker holds, when fewer than the worker in
    `slot` holds; None when none holds fewer (a slot left by a worker that died without
    clearing it does not count)."""
    mine, fewest = conns[slot], None
    for other, (pid, n) in enumerate(zip(pids, conns, strict=True)):
        if other != slot and pid and n < mine and (fewest is None or n < fewest) and alive(pid):
            fewest = n
    return fewest


def claim_slot(pid: int) -> int:
    """A free slot (or one left by a dead worker) for the worker `pid`, its count at 0."""
    with _claim:
        for slot in range(SLOTS):
            holder = _pids[slot]
            if holder == 0 or (holder != pid and not pid_alive(holder)):
                _pids[slot], _conns[slot] = pid, 0
                _used.value = max(_used.value, slot + 1)
                return slot
    raise RuntimeError(f"more than {SLOTS} gunicorn workers")


def release_slot(slot: int) -> None:
    with _claim:
        _pids[slot], _conns[slot] = 0, 0


class BalancedThreadWorker(ThreadWorker):
    """gunicorn's `gthread` worker, listening only while it is among the least loaded.

    The base worker enables its listener on each turn of its event loop when
    `nr_conns < worker_connections`, and closes a connection after its answer when it already
    keeps `max_keepalived` idle ones. All three are properties here: the count is published to
    the shared memory on every change, the limit is lowered to the count while another worker
    holds fewer connections, and `max_keepalived` drops to 0 while another holds two fewer."""

    def __init__(self, *args, **kwargs):
        self._slot: int | None = None
        self._nr_conns = 0
        self._limit = self._max_keepalived = 0
        super().__init__(*args, **kwargs)

    @property
    def nr_conns(self) -> int:
        return self._nr_conns

    @nr_conns.setter
    def nr_conns(self, value: int) -> None:
        self._nr_conns = value
        if self._slot is not None:
            _conns[self._slot] = value

    def _fewer_elsewhere(self) -> int | None:
        if self._slot is None:
            return None
        used = _used.value
        return fewer_elsewhere(self._slot, _pids[:used], _conns[:used])

    @property
    def worker_connections(self) -> int:
        if self._nr_conns >= self._limit or self._fewer_elsewhere() is None:
            return self._limit
        return self._nr_conns  # another holds fewer: stop listening until it catches up

    @worker_connections.setter
    def worker_connections(self, value: int) -> None:
        self._limit = value

    @property
    def max_keepalived(self) -> int:
        # Read after each request: a worker holding two connections more than another closes
        # this one after its answer ("Connection: close"), and the till reconnects to a worker
        # that listens. Connections already open move that way after a worker was recycled
        # (its tills reconnected to the others while it booted).
        fewest = self._fewer_elsewhere()
        if fewest is not None and fewest <= self._nr_conns - 2:
            return 0
        return self._max_keepalived

    @max_keepalived.setter
    def max_keepalived(self, value: int) -> None:
        self._max_keepalived = value

    def set_accept_enabled(self, enabled):
        # The base class stops listening for good once the worker is shutting down (recycled
        # after --max-requests, or stopped): it leaves the count, or a draining worker holding
        # few connections would keep every other worker from listening until it exits.
        if not enabled and not self.alive:
            self._leave()
        super().set_accept_enabled(enabled)

    def _leave(self):
        if self._slot is not None:
            release_slot(self._slot)
            self._slot = None

    def run(self):
        # Counted from the start of the event loop, once the application is loaded: a worker
        # still booting (a second of imports) and counted with no connection would keep the
        # others from listening while it cannot accept yet.
        self._slot = claim_slot(os.getpid())
        _conns[self._slot] = self._nr_conns
        try:
            super().run()
        finally:
            self._leave()
