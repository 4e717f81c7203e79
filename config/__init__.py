"""The composition root: settings, URLs, the Celery app, the WSGI/ASGI entry points, the web
server's worker and the nightly chain. It imports every app; no app imports it."""

from .celery import app as celery_app

__all__ = ("celery_app",)
