from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AnalyticsConfig(AppConfig):
    name = "analytics"
    verbose_name = _("Analytics")

    def ready(self):
        from members.jobs import register_job

        from .jobs import recompute_kpis

        # Last before the emails: the night's releases, expiries, tier changes and lifecycle
        # bonuses are in the figures staff read in the morning.
        register_job("recompute_kpis", recompute_kpis, after="grant_lifecycle_bonuses")
