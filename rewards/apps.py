from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class RewardsConfig(AppConfig):
    name = "rewards"
    verbose_name = _("Rewards")

    def ready(self):
        from members.jobs import register_job

        from .jobs import expire_vouchers

        register_job("expire_vouchers", expire_vouchers, after="release_pending_points")
