"""Staff administration of programs, stores, API keys, tiers, earning rules, costs, job runs,
campaigns and segments."""

import json
from contextlib import nullcontext
from datetime import timedelta
from decimal import Decimal

from celery.schedules import crontab
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import Q
from django.utils import formats, timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from rest_framework_api_key.admin import APIKeyModelAdmin

from . import services
from .models import (
    Campaign,
    EarningRule,
    JobRun,
    Program,
    ProgramCost,
    Store,
    StoreAPIKey,
    Tier,
    _touch_program,
)
from .models.jobs import lease_expired

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


class JobRunStatusFilter(admin.SimpleListFilter):
    """The status as staff read it: a run still marked running whose lease has expired is
    abandoned, before any sweep has written it."""

    title = _("status")
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return JobRun.Status.choices

    def queryset(self, request, queryset):
        value = self.value()
        if value is None:
            return queryset
        expired = lease_expired()
        if value == JobRun.Status.ABANDONED:
            return queryset.filter(Q(status=value) | expired)
        if value == JobRun.Status.RUNNING:
            return queryset.filter(status=value).exclude(expired)
        return queryset.filter(status=value)


@admin.register(JobRun)
class JobRunAdmin(admin.ModelAdmin):
    change_list_template = "admin/loyalty/jobrun/change_list.html"
    list_display = [
        "name",
        "shown_status",
        "started_at",
        "finished_at",
        "heartbeat_at",
        "is_dry_run",
        "triggered_by",
    ]
    list_filter = ["name", JobRunStatusFilter, "is_dry_run"]
    date_hierarchy = "started_at"
    fields = [
        "name",
        "shown_status",
        "abandoned_note",
        "started_at",
        "finished_at",
        "heartbeat_at",
        "lease_expires_at",
        "worker",
        "is_dry_run",
        "triggered_by",
        "summary_text",
        "error",
    ]
    readonly_fields = fields

    @admin.display(description=_("status"), ordering="status")
    def shown_status(self, obj):
        return JobRun.Status(obj.shown_status).label

    @admin.display(description=_("worker"))
    def worker(self, obj):
        if not obj.worker_host:
            return None
        return gettext("%(host)s, process %(pid)s") % {
            "host": obj.worker_host,
            "pid": obj.worker_pid,
        }

    @admin.display(description=_("summary"))
    def summary_text(self, obj):
        return format_html(
            "<pre>{}</pre>", json.dumps(obj.summary, indent=2, sort_keys=True, ensure_ascii=False)
        )

    @admin.display(description=_("what happened"))
    def abandoned_note(self, obj):
        if obj.shown_status != JobRun.Status.ABANDONED:
            return None
        heartbeat = obj.heartbeat_at or obj.started_at
        return gettext(
            "Its worker stopped renewing the run's lease: the last heartbeat was at "
            "%(heartbeat)s. The summary shows what the run had committed by then; the next run "
            "of this job carries on from there."
        ) % {"heartbeat": formats.date_format(timezone.localtime(heartbeat), "DATETIME_FORMAT")}

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "schedule": beat_schedule(),
            "lease_seconds": settings.JOB_LEASE_SECONDS,
        }
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


# Campaigns and segments -----------------------------------------------------------------------


class CampaignAdminForm(forms.ModelForm):
    """Channels and days of the week as checkboxes; tiers, stores and the segment must belong
    to the campaign's program. Dates are entered in the program's time zone (see
    CampaignAdmin.changeform_view)."""

    channels = forms.MultipleChoiceField(
        label=_("channels"),
        choices=Store.Channel.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text=_("Empty: every channel."),
    )
    weekdays = forms.TypedMultipleChoiceField(
        label=_("days of the week"),
        choices=Campaign.WEEKDAYS,
        coerce=int,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text=_("In the program's time zone. Empty: every day."),
    )

    def clean(self):
        data = super().clean()
        program = data.get("program")
        if program is not None:
            for name in ("tiers", "stores"):
                others = [o for o in data.get(name) or [] if o.program_id != program.pk]
                if others:
                    self.add_error(
                        name,
                        _("Not of this program: %(names)s.")
                        % {"names": ", ".join(str(o) for o in others)},
                    )
        return data


def _local(value, program):
    if value is None:
        return "-"
    return formats.localize(timezone.localtime(value, program.tzinfo).replace(tzinfo=None))


class CampaignAdmin(admin.ModelAdmin):
    """Registered by members' admin (members/admin.py), which adds the reports computed from
    the members' data: the audience preview and the results."""

    form = CampaignAdminForm
    list_display = [
        "name",
        "program",
        "trigger",
        "status",
        "starts_local",
        "ends_local",
        "effect",
        "effect_value",
        "is_exclusive",
        "priority",
        "holdout_percent",
        "budget_use",
    ]
    list_filter = ["program", "status", "trigger", "effect", "is_exclusive"]
    list_select_related = ["program"]
    search_fields = ["name", "description"]
    filter_horizontal = ["tiers", "stores"]
    autocomplete_fields = ["segment"]
    readonly_fields = ["budget_use"]
    fieldsets = [
        (
            None,
            {"fields": ["program", "name", "description", "status", "trigger"]},
        ),
        (
            _("Dates (in the program's time zone)"),
            {"fields": ["starts_at", "ends_at"]},
        ),
        (
            _("Effect"),
            {"fields": ["effect", "effect_value", "target_categories", "target_skus"]},
        ),
        (
            _("Conditions"),
            {
                "fields": [
                    "tiers",
                    "stores",
                    "channels",
                    "weekdays",
                    ("hour_from", "hour_until"),
                    "min_basket_amount",
                    "basket_categories",
                    "basket_skus",
                    "purchase_number",
                    ("enrolled_since", "enrolled_before"),
                    "segment",
                ]
            },
        ),
        (_("Stacking"), {"fields": ["is_exclusive", "priority"]}),
        (
            _("Budget"),
            {
                "fields": [
                    ("budget_points", "budget_amount"),
                    "budget_period",
                    ("period_budget_points", "period_budget_amount"),
                    "budget_per_store",
                    "budget_use",
                ]
            },
        ),
        (_("Control group"), {"fields": ["holdout_percent"]}),
        (
            _("Lifecycle bonuses"),
            {
                "fields": [
                    "welcome_after_first_purchase",
                    "birthday_on_day",
                    "referral_limit",
                    "inactive_months",
                ]
            },
        ),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("budget_usage")

    @admin.display(description=_("starts"), ordering="starts_at")
    def starts_local(self, obj):
        return _local(obj.starts_at, obj.program)

    @admin.display(description=_("ends"), ordering="ends_at")
    def ends_local(self, obj):
        return _local(obj.ends_at, obj.program)

    @admin.display(description=_("spend against budget"))
    def budget_use(self, obj):
        """Points given against each cap: overall, and the current period (per store when
        the caps are per store), with their money value."""
        if obj.pk is None:
            return "-"
        total, per_period = obj.budget_caps(obj.program.point_cost_amount)
        if total is None and per_period is None:
            return gettext("No budget cap.")
        rows = sorted(obj.budget_usage.all(), key=lambda u: u.scope)
        if not rows:
            return gettext("Nothing given yet.")
        cost = obj.program.point_cost_amount
        return format_html_join(
            mark_safe("<br>"),  # nosec B308  # a constant tag, no input
            "{}: {} / {} {} ({} / {} {})",
            (
                (
                    u.scope,
                    u.spent_points,
                    u.cap_points,
                    obj.program.points_name,
                    (u.spent_points * cost).quantize(Decimal("0.01")),
                    (u.cap_points * cost).quantize(Decimal("0.01")),
                    obj.program.currency,
                )
                for u in rows
            ),
        )

    def _program_tz(self, request, object_id):
        program_id = request.POST.get("program") or request.GET.get("program")
        if not program_id and object_id:
            program_id = (
                Campaign.objects.filter(pk=object_id).values_list("program_id", flat=True).first()
            )
        if program_id and str(program_id).isdigit():
            program = Program.objects.filter(pk=program_id).first()
            if program is not None:
                return program.tzinfo
        return None

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        # Dates are entered and shown in the campaign's program's time zone, stored in UTC.
        tz = self._program_tz(request, object_id)
        with timezone.override(tz) if tz else nullcontext():
            response = super().changeform_view(request, object_id, form_url, extra_context)
            if hasattr(response, "render"):
                response.render()  # a TemplateResponse renders lazily: do it in the zone
            return response

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        # Tiers and stores are saved after the campaign: move the program's version again so
        # that the cached campaigns (loyalty/selectors.py) see them.
        _touch_program(form.instance.program_id)


class SegmentAdmin(admin.ModelAdmin):
    """Registered by members' admin (members/admin.py), which recomputes a segment on save and
    on demand."""

    list_display = ["name", "program", "member_count", "refreshed_at"]
    list_filter = ["program"]
    list_select_related = ["program"]
    search_fields = ["name"]
    readonly_fields = ["member_count", "refreshed_at"]
    fields = [
        "program",
        "name",
        "description",
        ("min_recency_score", "min_frequency_score", "min_monetary_score"),
        "inactive_days",
        "tier",
        ("enrolled_from", "enrolled_until"),
        "member_count",
        "refreshed_at",
    ]
