"""Staff administration of members, purchases and the points ledger.

Balances are never edited here: they change only through the ledger (members/ledger.py). Staff
move points with the "Adjust points" view, which calls the adjustment service; the ledger,
purchases and returns are read-only.
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from loyalty import admin as loyalty_admin
from loyalty.admin_helpers import ReadOnlyAdminMixin, render_action_form
from loyalty.errors import DomainError
from loyalty.forms import add_domain_error
from loyalty.models import Campaign, Segment, Tier

from . import services, tiers
from .campaigns import audience_report, refresh_now, results_report
from .models import (
    Member,
    MemberNotification,
    PointsEntry,
    Purchase,
    PurchaseLine,
    PurchaseReturn,
    TierChange,
)
from .selectors import member_progress

# A bound on one manual adjustment, so that a typo cannot overflow a balance column.
MAX_ADJUSTMENT = 1_000_000

BALANCE_FIELDS = ["points_available", "points_pending", "points_lifetime"]


# Members --------------------------------------------------------------------------------------


class MemberAdminForm(forms.ModelForm):
    class Meta:
        model = Member
        # What staff may edit; balances, card number and enrolment facts are never here.
        # The tier changes only through "Set tier" (recorded with a reason), purchases and the
        # nightly requalification, so that every change is a TierChange.
        fields = [
            "status",
            "first_name",
            "last_name",
            "email",
            "phone",
            "birth_date",
            "preferred_language",
            "marketing_consent",
            "referred_by",
        ]

    def clean_email(self):
        return (self.cleaned_data.get("email") or "").strip().lower()

    def clean_phone(self):
        return (self.cleaned_data.get("phone") or "").strip()

    def clean(self):
        cleaned = super().clean()
        referrer = cleaned.get("referred_by")
        if referrer is not None and self.instance.pk:
            if referrer.pk == self.instance.pk:
                self.add_error("referred_by", _("A member cannot refer themselves."))
            elif referrer.program_id != self.instance.program_id:
                self.add_error("referred_by", _("The referrer belongs to another program."))
        return cleaned


class SetTierForm(forms.Form):
    tier = forms.ModelChoiceField(label=_("Tier"), queryset=Tier.objects.none())
    until = forms.DateField(
        label=_("Until"),
        help_text=_(
            "The tier is kept until this date (inclusive), whatever the member's qualifying "
            "value; the next night the member goes to the tier their value supports."
        ),
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    reason = forms.CharField(
        label=_("Reason"),
        max_length=200,
        help_text=_("Recorded in the tier history with your user name."),
    )

    def __init__(self, *args, member, **kwargs):
        super().__init__(*args, **kwargs)
        self.member = member
        self.fields["tier"].queryset = Tier.objects.filter(program_id=member.program_id)

    def clean_until(self):
        until = self.cleaned_data["until"]
        today = timezone.localtime(timezone.now(), self.member.program.tzinfo).date()
        if until < today:
            raise forms.ValidationError(_("The end date cannot be in the past."), code="past")
        return until


class AdjustPointsForm(forms.Form):
    points = forms.IntegerField(
        label=_("Points"),
        min_value=-MAX_ADJUSTMENT,
        max_value=MAX_ADJUSTMENT,
        help_text=_("Positive to credit, negative to debit the available balance."),
    )
    reason = forms.CharField(
        label=_("Reason"),
        max_length=200,
        help_text=_("Recorded in the ledger with your user name."),
    )

    def clean_points(self):
        points = self.cleaned_data["points"]
        if points == 0:
            raise forms.ValidationError(_("Enter a non-zero number of points."), code="zero")
        return points


class TierChangeInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = TierChange
    fk_name = "member"
    extra = 0
    can_delete = False
    fields = [
        "created_at",
        "from_tier",
        "to_tier",
        "reason",
        "qualifying_value",
        "note",
        "staff_user",
    ]
    readonly_fields = fields
    ordering = ["-created_at", "-id"]
    verbose_name_plural = _("tier history")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("from_tier", "to_tier", "staff_user")


@admin.register(Member)
class MemberAdmin(admin.ModelAdmin):
    form = MemberAdminForm
    inlines = [TierChangeInline]
    change_form_template = "admin/members/member/change_form.html"
    change_list_template = "admin/members/member/change_list.html"
    list_display = [
        "card_number",
        "display_full_name",
        "email",
        "program",
        "tier",
        "status",
        "points_available",
        "points_pending",
        "enrolled_at",
    ]
    list_filter = ["program", "status", "tier", "enrolment_channel", "marketing_consent"]
    search_fields = ["card_number", "email", "phone", "last_name", "first_name", "referral_code"]
    list_select_related = ["program", "tier"]
    raw_id_fields = ["referred_by"]
    date_hierarchy = "enrolled_at"
    readonly_fields = [
        "card_number",
        "referral_code",
        "program",
        *BALANCE_FIELDS,
        "enrolled_at",
        "enrolment_channel",
        "enrolment_store",
        "marketing_consent_at",
        "last_activity_at",
        "created_at",
        "updated_at",
        "tier",
        "tier_review_on",
        "tier_manual_until",
        "qualifying_bound",
    ]
    fieldsets = [
        (None, {"fields": ["card_number", "program", "status"]}),
        (
            _("Tier"),
            {
                "fields": ["tier", "tier_review_on", "tier_manual_until", "qualifying_bound"],
                "description": _(
                    "Tiers change on purchases, in the nightly requalification, or with "
                    "“Set tier”; every change is in the tier history below."
                ),
            },
        ),
        (
            _("Contact"),
            {
                "fields": [
                    "first_name",
                    "last_name",
                    "email",
                    "phone",
                    "birth_date",
                    "preferred_language",
                    "marketing_consent",
                    "marketing_consent_at",
                ]
            },
        ),
        (
            _("Points"),
            {
                "fields": BALANCE_FIELDS,
                "description": _(
                    "Balances change only through the ledger. Use “Adjust points” to correct them."
                ),
            },
        ),
        (
            _("Enrolment"),
            {
                "fields": [
                    "enrolled_at",
                    "enrolment_channel",
                    "enrolment_store",
                    "referral_code",
                    "referred_by",
                    "last_activity_at",
                    "created_at",
                    "updated_at",
                ]
            },
        ),
    ]

    @admin.display(description=_("name"), ordering="last_name")
    def display_full_name(self, obj):
        return obj.full_name

    def has_add_permission(self, request):
        # Members enrol through the enrolment service (API, portal), never here.
        return False

    def has_delete_permission(self, request, obj=None):
        # Members are closed (status), not deleted: the ledger refers to them.
        return False

    def save_model(self, request, obj, form, change):
        services.update_member_by_staff(member=obj, fields=form.changed_data)

    # Points adjustment ------------------------------------------------------------------------

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/adjust/",
                self.admin_site.admin_view(self.adjust_points_view),
                name="{}_{}_adjust".format(*info),
            ),
            path(
                "<path:object_id>/set-tier/",
                self.admin_site.admin_view(self.set_tier_view),
                name="{}_{}_set_tier".format(*info),
            ),
            *super().get_urls(),
        ]

    def adjust_points_view(self, request, object_id):
        member = self.get_object(request, unquote(object_id))
        if member is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_change_permission(request, member):
            raise PermissionDenied
        change_url = reverse(
            "admin:members_member_change", args=[member.pk], current_app=self.admin_site.name
        )
        if request.method == "POST":
            form = AdjustPointsForm(request.POST)
            if form.is_valid():
                try:
                    services.adjust_points(
                        member=member,
                        points=form.cleaned_data["points"],
                        reason=form.cleaned_data["reason"],
                        staff_user=request.user,
                    )
                except DomainError as exc:
                    add_domain_error(form, exc)
                else:
                    member.refresh_from_db()
                    self.message_user(
                        request,
                        gettext(
                            "%(points)+d points adjusted for %(member)s. "
                            "Available balance: %(balance)d."
                        )
                        % {
                            "points": form.cleaned_data["points"],
                            "member": member,
                            "balance": member.points_available,
                        },
                        messages.SUCCESS,
                    )
                    return HttpResponseRedirect(change_url)
        else:
            form = AdjustPointsForm()
        return self._member_form_response(
            request, member, form, "adjust_points", _("Adjust points"), change_url
        )

    def set_tier_view(self, request, object_id):
        member = self.get_object(request, unquote(object_id))
        if member is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_change_permission(request, member):
            raise PermissionDenied
        change_url = reverse(
            "admin:members_member_change", args=[member.pk], current_app=self.admin_site.name
        )
        if request.method == "POST":
            form = SetTierForm(request.POST, member=member)
            if form.is_valid():
                try:
                    tiers.set_manual_tier(
                        member=member,
                        tier=form.cleaned_data["tier"],
                        until=form.cleaned_data["until"],
                        reason=form.cleaned_data["reason"],
                        staff_user=request.user,
                    )
                except DomainError as exc:
                    add_domain_error(form, exc)
                else:
                    self.message_user(
                        request,
                        gettext("%(member)s is in the %(tier)s tier until %(until)s.")
                        % {
                            "member": member,
                            "tier": form.cleaned_data["tier"],
                            "until": form.cleaned_data["until"],
                        },
                        messages.SUCCESS,
                    )
                    return HttpResponseRedirect(change_url)
        else:
            form = SetTierForm(member=member, initial={"tier": member.tier_id})
        return self._member_form_response(
            request,
            member,
            form,
            "set_tier",
            _("Set tier"),
            change_url,
            progress=member_progress(member),
        )

    def _member_form_response(self, request, member, form, template, title, change_url, **extra):
        return render_action_form(
            self,
            request,
            f"admin/members/member/{template}.html",
            {
                "title": title,
                "submit_label": title,
                "subtitle": str(member),
                "original": member,
                "member": member,
                "object_label": str(member),
                "form": form,
                "change_url": change_url,
                **extra,
            },
        )


# Purchases ------------------------------------------------------------------------------------


class PurchaseLineInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = PurchaseLine
    extra = 0
    can_delete = False
    fields = [
        "line_no",
        "sku",
        "category",
        "quantity",
        "unit_price",
        "line_amount",
        "points_earned",
        "returned_quantity",
    ]
    readonly_fields = fields


class PurchaseReturnInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = PurchaseReturn
    extra = 0
    can_delete = False
    fields = [
        "return_id",
        "store",
        "return_amount",
        "occurred_at",
        "recorded_at",
        "points_reversed",
    ]
    readonly_fields = fields


@admin.register(Purchase)
class PurchaseAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "receipt_id",
        "store",
        "member",
        "total_amount",
        "currency",
        "occurred_at",
        "points_earned",
        "returned_amount",
        "points_reversed",
    ]
    list_filter = ["program", "store"]
    search_fields = ["receipt_id", "member__card_number"]
    list_select_related = ["store", "member"]
    date_hierarchy = "occurred_at"
    show_full_result_count = False
    inlines = [PurchaseLineInline, PurchaseReturnInline]
    fields = [
        "public_id",
        "program",
        "store",
        "member",
        "receipt_id",
        "total_amount",
        "currency",
        "occurred_at",
        "recorded_at",
        "points_earned",
        "returned_amount",
        "points_reversed",
        "breakdown",
        "release_at",
        "released_at",
    ]
    readonly_fields = fields


# Ledger ---------------------------------------------------------------------------------------


@admin.register(PointsEntry)
class PointsEntryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The append-only ledger: view only, for staff with the view permission."""

    list_display = [
        "effective_at",
        "member",
        "kind",
        "bucket",
        "points",
        "purchase",
        "store",
        "staff_user",
        "reason",
    ]
    list_filter = ["kind", "bucket", "program"]
    search_fields = ["member__card_number", "purchase__receipt_id"]
    list_select_related = ["member", "purchase", "store", "staff_user"]
    date_hierarchy = "effective_at"
    show_full_result_count = False
    fields = [
        "txn",
        "program",
        "member",
        "kind",
        "bucket",
        "points",
        "effective_at",
        "created_at",
        "purchase",
        "purchase_return",
        "store",
        "staff_user",
        "reason",
    ]
    readonly_fields = fields


# Tiers and notifications -------------------------------------------------------------------------


@admin.register(TierChange)
class TierChangeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "created_at",
        "member",
        "from_tier",
        "to_tier",
        "reason",
        "qualifying_value",
        "staff_user",
        "note",
    ]
    list_filter = ["program", "reason", "to_tier"]
    search_fields = ["member__card_number", "member__email", "note"]
    list_select_related = ["member", "from_tier", "to_tier", "staff_user"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    fields = [
        "program",
        "member",
        "from_tier",
        "to_tier",
        "reason",
        "note",
        "qualifying_value",
        "purchase",
        "staff_user",
        "created_at",
    ]
    readonly_fields = fields


@admin.register(MemberNotification)
class MemberNotificationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "member", "kind", "key", "sent_at", "attempts", "error"]
    list_filter = ["kind", ("sent_at", admin.EmptyFieldListFilter), "member__program"]
    search_fields = ["member__card_number", "member__email", "key"]
    list_select_related = ["member"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    fields = ["member", "kind", "key", "context", "created_at", "sent_at", "attempts", "error"]
    readonly_fields = fields


# Campaigns and segments -----------------------------------------------------------------------
# Defined in loyalty (their models live there) and registered here with what needs the
# members' data.


def _report_table(rows):
    cells = format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows)
    return format_html("<table>{}</table>", cells)


@admin.register(Campaign)
class CampaignAdmin(loyalty_admin.CampaignAdmin):
    readonly_fields = [*loyalty_admin.CampaignAdmin.readonly_fields, "results", "audience"]

    def get_fieldsets(self, request, obj=None):
        fieldsets = list(super().get_fieldsets(request, obj))
        if obj is not None:
            fieldsets.append((_("Audience preview"), {"fields": ["audience"]}))
            fieldsets.append((_("Results"), {"fields": ["results"]}))
        return fieldsets

    @admin.display(description=_("results"))
    def results(self, obj):
        """Points given, cost, members reached, uplift against the hold-out group, ROI."""
        return "-" if obj.pk is None else _report_table(results_report(obj))

    @admin.display(description=_("audience"))
    def audience(self, obj):
        """Eligible members and the expected cost from the last comparable period."""
        return "-" if obj.pk is None else _report_table(audience_report(obj))


@admin.register(Segment)
class SegmentAdmin(loyalty_admin.SegmentAdmin):
    """Segments are recomputed nightly; saving one, or the action, recomputes it at once."""

    actions = ["refresh_segments"]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        refresh_now(obj)

    @admin.action(description=_("Refresh the selected segments now"))
    def refresh_segments(self, request, queryset):
        for segment in queryset.select_related("program"):
            refresh_now(segment)
        self.message_user(request, _("Segments refreshed."), messages.SUCCESS)
