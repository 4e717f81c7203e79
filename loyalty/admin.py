"""Staff administration of programs, stores, API keys, tiers, earning rules, costs and job runs."""

from datetime import timedelta

from celery.schedules import crontab
from django.conf import settings
from django.contrib import admin, messages
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from rest_framework_api_key.admin import APIKeyModelAdmin

from . import services
from .models import EarningRule, JobRun, Program, ProgramCost, Store, StoreAPIKey, Tier

admin.site.site_header = _("Loyalty platform administration")
admin.site.site_title = _("Loyalty platform")
admin.site.index_title = _("Programs and members")


class StoreInline(admin.TabularInline):
    model = Store
    extra = 0
    fields = ["name", "slug", "channel", "city", "is_active"]
    prepopulated_fields = {"slug": ["name"]}
    show_change_link = True


class TierInline(admin.TabularInline):
    model = Tier
    extra = 0
    fields = ["rank", "name", "qualify_threshold", "retain_threshold", "earn_multiplier", "perks"]


class EarningRuleInline(admin.TabularInline):
    model = EarningRule
    extra = 0
    fields = [
        "name",
        "kind",
        "value",
        "channel",
        "store",
        "category",
        "sku",
        "priority",
        "is_active",
        "valid_from",
        "valid_until",
    ]
    autocomplete_fields = ["store"]


class ProgramCostInline(admin.TabularInline):
    model = ProgramCost
    extra = 0
    fields = [
        "category",
        "label",
        "kind",
        "cost_amount",
        "starts_on",
        "ends_on",
        "amortisation_months",
    ]


@admin.register(Program)
class ProgramAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "slug",
        "status",
        "currency",
        "time_zone",
        "base_earn_rate",
        "return_window_days",
        "expiry_policy",
        "store_count",
    ]
    list_filter = ["status", "currency", "expiry_policy", "tier_metric"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [StoreInline, TierInline, EarningRuleInline, ProgramCostInline]
    fieldsets = [
        (None, {"fields": ["name", "slug", "status", "currency", "time_zone", "points_name"]}),
        (
            _("Earning"),
            {"fields": ["base_earn_rate", "rounding", "return_window_days", "backdating_days"]},
        ),
        (_("Expiry"), {"fields": ["expiry_policy", "expiry_months"]}),
        (
            _("Tiers"),
            {
                "fields": [
                    "tier_metric",
                    "tier_window",
                    "tier_window_months",
                    "tier_grace_periods",
                    "tier_downgrade_policy",
                ]
            },
        ),
        (_("Rewards"), {"fields": ["refund_expired_vouchers"]}),
        (_("Return on investment"), {"fields": ["gross_margin_rate", "point_cost_amount"]}),
    ]

    def get_queryset(self, request):
        from django.db.models import Count

        return super().get_queryset(request).annotate(_store_count=Count("stores"))

    @admin.display(description=_("stores"), ordering="_store_count")
    def store_count(self, obj):
        return obj._store_count


@admin.register(Store)
class StoreAdmin(admin.ModelAdmin):
    list_display = ["name", "program", "channel", "city", "is_active", "created_at"]
    list_filter = ["program", "channel", "is_active"]
    search_fields = ["name", "slug", "city"]
    list_select_related = ["program"]
    prepopulated_fields = {"slug": ["name"]}


@admin.register(StoreAPIKey)
class StoreAPIKeyAdmin(APIKeyModelAdmin):
    """Creating a key here shows it once in a message; only its hash is kept."""

    list_display = [*APIKeyModelAdmin.list_display, "store"]
    list_filter = [*APIKeyModelAdmin.list_filter, "store__program"]
    list_select_related = ["store", "store__program"]
    autocomplete_fields = ["store"]
    actions = ["revoke_keys"]

    @admin.action(description=_("Revoke the selected keys"))
    def revoke_keys(self, request, queryset):
        for api_key in queryset:
            services.revoke_store_api_key(api_key=api_key)
        self.message_user(request, _("Keys revoked."), messages.SUCCESS)


@admin.register(Tier)
class TierAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "program",
        "rank",
        "qualify_threshold",
        "retain_threshold",
        "earn_multiplier",
    ]
    list_filter = ["program"]
    list_select_related = ["program"]
    search_fields = ["name"]


@admin.register(EarningRule)
class EarningRuleAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "program",
        "kind",
        "value",
        "channel",
        "store",
        "category",
        "sku",
        "priority",
        "is_active",
        "valid_from",
        "valid_until",
    ]
    list_filter = ["program", "kind", "channel", "is_active"]
    list_select_related = ["program", "store"]
    search_fields = ["name", "category", "sku"]
    autocomplete_fields = ["store"]


@admin.register(ProgramCost)
class ProgramCostAdmin(admin.ModelAdmin):
    list_display = [
        "label",
        "program",
        "category",
        "kind",
        "cost_amount",
        "starts_on",
        "ends_on",
        "amortisation_months",
    ]
    list_filter = ["program", "category", "kind"]
    list_select_related = ["program"]
    search_fields = ["label"]
    date_hierarchy = "starts_on"


@admin.register(JobRun)
class JobRunAdmin(admin.ModelAdmin):
    change_list_template = "admin/loyalty/jobrun/change_list.html"
    list_display = ["name", "status", "started_at", "finished_at", "is_dry_run", "triggered_by"]
    list_filter = ["name", "status", "is_dry_run"]
    date_hierarchy = "started_at"
    readonly_fields = [f.name for f in JobRun._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "schedule": beat_schedule()}
        return super().changelist_view(request, extra_context)


def beat_schedule() -> list[tuple[str, str, str]]:
    """The scheduled jobs, as staff read them: (name, task, when)."""
    rows = []
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        when = entry["schedule"]
        if isinstance(when, timedelta):
            text = gettext("every %(seconds)d s") % {"seconds": when.total_seconds()}
        elif isinstance(when, crontab):
            text = gettext("every day at %(hour)s:%(minute)s (%(tz)s)") % {
                "hour": ",".join(f"{h:02d}" for h in sorted(when.hour)),
                "minute": ",".join(f"{m:02d}" for m in sorted(when.minute)),
                "tz": settings.CELERY_TIMEZONE,
            }
        else:
            text = str(when)
        rows.append((name, entry["task"], text))
    return rows
