from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MembersConfig(AppConfig):
    name = "members"
    verbose_name = _("Members")

    def ready(self):
        from loyalty.admin import register_campaign_report, register_segment_refresh

        from .campaigns.lifecycle import grant_lifecycle_bonuses
        from .campaigns.reports import audience_report, results_report
        from .campaigns.segments import refresh_now, refresh_segments
        from .jobs import register_job

        # Segments after the tiers (a segment may select a tier), lifecycle bonuses after the
        # segments (a campaign may target one).
        register_job("refresh_segments", refresh_segments, after="requalify_tiers")
        register_job("grant_lifecycle_bonuses", grant_lifecycle_bonuses, after="refresh_segments")
        # The campaign's page (loyalty's admin) shows reports computed from the members' data.
        register_campaign_report("results", results_report)
        register_campaign_report("audience", audience_report)
        register_segment_refresh(refresh_now)
