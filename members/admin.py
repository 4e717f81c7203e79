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
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from loyalty.errors import DomainError
from loyalty.models import Tier

from . import services
from .models import Member, PointsEntry, Purchase, PurchaseLine, PurchaseReturn

# A bound on one manual adjustment, so that a typo cannot overflow a balance column.
MAX_ADJUSTMENT = 1_000_000

BALANCE_FIELDS = ["points_available", "points_pending", "points_lifetime"]


class ReadOnlyAdminMixin:
    """Nothing can be added, changed or deleted; staff with the view permission can look."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


# Members --------------------------------------------------------------------------------------


class MemberAdminForm(forms.ModelForm):
    class Meta:
        model = Member
        # What staff may edit; balances, card number and enrolment facts are never here.
        fields = [
            "status",
            "tier",
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
        tier = cleaned.get("tier")
        if tier is not None and self.instance.pk and tier.program_id != self.instance.program_id:
            self.add_error("tier", _("This tier belongs to another program."))
        return cleaned


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


@admin.register(Member)
class MemberAdmin(admin.ModelAdmin):
    form = MemberAdminForm
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
    ]
    fieldsets = [
        (None, {"fields": ["card_number", "program", "status", "tier"]}),
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

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        if obj is not None and "tier" in form.base_fields:
            form.base_fields["tier"].queryset = Tier.objects.filter(program_id=obj.program_id)
        return form

    def save_model(self, request, obj, form, change):
        if "marketing_consent" in form.changed_data:
            obj.marketing_consent_at = timezone.now()
        super().save_model(request, obj, form, change)

    # Points adjustment ------------------------------------------------------------------------

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/adjust/",
                self.admin_site.admin_view(self.adjust_points_view),
                name="{}_{}_adjust".format(*info),
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
                    field = exc.field if exc.field in form.fields else None
                    form.add_error(field, exc.detail)
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
        context = {
            **self.admin_site.each_context(request),
            "title": _("Adjust points"),
            "subtitle": str(member),
            "opts": self.opts,
            "original": member,
            "member": member,
            "form": form,
            "change_url": change_url,
            "has_view_permission": self.has_view_permission(request, member),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/members/member/adjust_points.html", context)


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
