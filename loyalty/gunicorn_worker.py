"""The gunicorn worker that `bin/serve web` runs: gunicorn's threaded worker (a till's connection
is kept alive between purchases), except that a new connection goes to the worker holding the
fewest.

Gunicorn's workers share one listening socket and the first one awake accepts. A kept-alive
connection then stays with that worker for good, so the tills connecting together after a
restart could pile up on one worker (12, 3 and 1 of 16 connections were seen on three workers),
which the GIL caps at one core while the others idle. Here each worker publishes how many
connections it holds, in memory shared by every worker of the server, and listens for new ones
only while no other live worker holds fewer. The least loaded worker is always listening, so
a new connection never waits for a busy one (a policy of accepting only with a free thread
left connections queued for seconds: docs/architecture.md, "Hot path of a purchase").
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


def least_loaded(
    slot: int,
    pids: Sequence[int],
    conns: Sequence[int],
    alive: Callable[[int], bool] = pid_alive,
) -> bool:
    """Whether the worker in `slot` holds no more connections than any other live worker (a
    slot left by a worker that died without clearing it does not count)."""
    mine = conns[slot]
    return not any(
        pid and n < mine and alive(pid)
        for other, (pid, n) in enumerate(zip(pids, conns, strict=True))
        if other != slot
    )


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
    `nr_conns < worker_connections`; both are properties here: the count is published to the
    shared memory on every change, and the limit is lowered to the count while another worker
    holds fewer connections."""

    def __init__(self, *args, **kwargs):
        self._slot: int | None = None
        self._nr_conns = 0
        self._limit = 0
        super().__init__(*args, **kwargs)

    @property
    def nr_conns(self) -> int:
        return self._nr_conns

    @nr_conns.setter
    def nr_conns(self, value: int) -> None:
        self._nr_conns = value
        if self._slot is not None:
            _conns[self._slot] = value

    @property
    def worker_connections(self) -> int:
        if self._slot is None or self._nr_conns >= self._limit:
            return self._limit
        used = _used.value
        if least_loaded(self._slot, _pids[:used], _conns[:used]):
            return self._limit
        return self._nr_conns  # not below it: stop listening until the others catch up

    @worker_connections.setter
    def worker_connections(self, value: int) -> None:
        self._limit = value

    def init_process(self):
        # In the worker, after the fork; the base class runs the event loop from here.
        self._slot = claim_slot(os.getpid())
        _conns[self._slot] = self._nr_conns
        try:
            super().init_process()
        finally:
            release_slot(self._slot)
