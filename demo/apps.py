from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The demo story of `make run` and the benchmarks: above the domain apps, writing through
    their services (and through the ledger's bulk-load functions for the generated history)."""

    name = "demo"
