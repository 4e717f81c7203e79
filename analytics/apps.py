from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AnalyticsConfig(AppConfig):
    name = "analytics"
    verbose_name = _("Analytics")

    def ready(self):
        from members.campaigns import campaign_costs
        from members.jobs import register_job

        from .jobs import recompute_kpis
        from .kpis import grouped_campaign_costs, register_cost_source

        # Last before the emails: the night's releases, expiries, tier changes and lifecycle
        # bonuses are in the figures staff read in the morning.
        register_job("recompute_kpis", recompute_kpis, after="grant_lifecycle_bonuses")
        # Campaign points given in the period, at the program's cost of one point.
        register_cost_source(
            "campaigns",
            lambda ctx: campaign_costs(ctx.program, ctx.start, ctx.end),
            grouped=grouped_campaign_costs,
        )
