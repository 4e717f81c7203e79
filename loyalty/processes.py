"""Helpers for worker processes started with multiprocessing's "spawn" method."""

import os


def setup_django() -> None:
    """Initializer of a spawned worker: set Django up before anything imports a model.

    It lives in a module that imports no model, since the worker must import it first.
    """
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "loyalty.settings")
    django.setup()
