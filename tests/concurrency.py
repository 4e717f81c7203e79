"""Real-thread races for the concurrency tests (PostgreSQL, transactional tests)."""

import threading

from django.db import connection


def race(n, work):
    """Run work(i) in n threads released at the same instant, each on its own connection;
    return the results (or the exceptions raised) by index."""
    barrier = threading.Barrier(n)
    results = [None] * n

    def run(i):
        try:
            barrier.wait()
            results[i] = work(i)
        except Exception as exc:  # surfaced by the callers' assertions
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread is stuck"
    return results
