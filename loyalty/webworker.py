"""The gunicorn worker of `bin/serve web`: gunicorn's threaded worker that accepts a new
connection only while one of its threads is free.

Gunicorn's workers all wait on the one listening socket and the first awake accepts. A POS keeps
its connection open for its next purchase, so tills connecting at once could mostly land on one
worker, which then serves them with one core (the GIL) while the other workers idle: runs of
bench/pos_throughput.py (16 clients, 3 workers) gave 510/s with both cores busy and 284/s with
them a third idle. Here a worker whose threads are all busy leaves new connections in the
listen queue for a worker with a free thread; its kept-alive connections stay with it. Under a
load that keeps every thread busy, a new connection waits for the first free thread.
"""

from gunicorn.workers.gthread import ThreadWorker


class BalancedThreadWorker(ThreadWorker):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Requests handed to the thread pool and not finished: touched only by the worker's
        # main thread (enqueue_req, and finish_request through the method queue).
        self.in_flight = 0

    def enqueue_req(self, conn):
        self.in_flight += 1
        super().enqueue_req(conn)
        if self.in_flight >= self.cfg.threads:
            self.set_accept_enabled(False)

    def finish_request(self, conn, fs):
        self.in_flight -= 1
        super().finish_request(conn, fs)

    def set_accept_enabled(self, enabled):
        # The main loop calls this whenever its own condition (a connection slot left) differs
        # from the current state: so once enqueue_req has stopped accepting, every loop looks
        # again, and accepting resumes as soon as a thread is free.
        super().set_accept_enabled(enabled and self.in_flight < self.cfg.threads)
