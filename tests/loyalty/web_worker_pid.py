"""A WSGI application answering with the pid of the worker that serves it (for
test_gunicorn_worker: which worker holds which connection)."""

import os


def application(environ, start_response):
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
