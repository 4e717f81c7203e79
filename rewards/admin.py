"""Staff administration of the reward catalogue and of redemptions (vouchers).

Rewards are edited here. Redemptions are read-only: points and stock move only through
rewards/services.py; staff cancel an unused voucher with the "Cancel voucher" view, which
refunds its points and gives its stock back.
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied
from django.db.models import Count, DecimalField, Q, Sum, Value
from django.db.models.functions import Coalesce
from django.http import HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.safestring import mark_safe
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from loyalty.admin_helpers import ReadOnlyAdminMixin, render_action_form
from loyalty.errors import DomainError
from loyalty.forms import add_domain_error
from loyalty.models import Tier
from members.cards import normalize_card_number
from members.models import Member

from . import services
from .models import Redemption, Reward
from .qr import qr_svg

NOT_CANCELLED = ~Q(redemptions__status=Redemption.Status.CANCELLED)


# Rewards ----------------------------------------------------------------------------------------


class TierChoiceField(forms.ModelMultipleChoiceField):
    """Tiers labelled with their program while the reward's program is not known yet."""

    def label_from_instance(self, obj):
        return f"{obj.program.name} · {obj.name}"


class TierListFilter(admin.RelatedFieldListFilter):
    """Tiers named with their program: several programs may have a "Gold" tier."""

    def field_choices(self, field, request, model_admin):
        tiers = Tier.objects.select_related("program").order_by("program__name", "rank")
        return [(t.pk, f"{t.program.name} · {t.name}") for t in tiers]


class RewardAdminForm(forms.ModelForm):
    class Meta:
        model = Reward
        fields = [
            "program",
            "kind",
            "is_active",
            "display_order",
            "name_fr",
            "name_en",
            "description_fr",
            "description_en",
            "image",
            "value",
            "sku",
            "partner_name",
            "voucher_valid_days",
            "points_cost",
            "cost_amount",
            "stock",
            "tiers",
            "limit_per_member",
            "limit_period",
            "valid_from",
            "valid_until",
        ]
        field_classes = {"tiers": TierChoiceField}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "stock" in self.fields:
            # The stock shown is posted back, so that saving applies the change made in the form
            # to the stock as it is then (redemptions move it meanwhile).
            self.fields["stock"].show_hidden_initial = True
        tiers = self.fields.get("tiers")
        if tiers is None:
            return
        program_id = self.instance.program_id
        queryset = Tier.objects.select_related("program").order_by("program__name", "rank")
        if program_id:
            # A saved reward keeps its program: only its tiers are offered.
            queryset = queryset.filter(program_id=program_id)
        tiers.queryset = queryset

    def shown_stock(self) -> int | None:
        """The stock the form showed (posted back as a hidden initial value)."""
        field = self.fields["stock"]
        raw = field.hidden_widget().value_from_datadict(
            self.data, self.files, self.add_initial_prefix("stock")
        )
        return field.to_python(raw)

    def clean(self):
        cleaned = super().clean()
        program = cleaned.get("program") or (
            self.instance.program if self.instance.program_id else None
        )
        tiers = cleaned.get("tiers")
        if program is not None and tiers:
            foreign = [t for t in tiers if t.program_id != program.pk]
            if foreign:
                self.add_error(
                    "tiers",
                    forms.ValidationError(
                        _("These tiers belong to another program: %(tiers)s."),
                        code="foreign_tier",
                        params={"tiers": ", ".join(t.name for t in foreign)},
                    ),
                )
        return cleaned


@admin.register(Reward)
class RewardAdmin(admin.ModelAdmin):
    form = RewardAdminForm
    change_form_template = "admin/rewards/reward/change_form.html"
    list_display = [
        "display_name",
        "program",
        "kind",
        "points_cost",
        "cost_amount",
        "display_stock",
        "redeemed_count",
        "used_count",
        "redeemed_cost",
        "is_active",
        "validity",
    ]
    list_display_links = ["display_name"]
    list_filter = ["program", "kind", "is_active", ("tiers", TierListFilter)]
    list_select_related = ["program"]
    search_fields = ["name_fr", "name_en", "sku", "partner_name"]
    filter_horizontal = ["tiers"]
    readonly_fields = ["created_at"]
    fieldsets = [
        (
            None,
            {"fields": ["program", "kind", "is_active", "display_order"]},
        ),
        (
            _("Description"),
            {
                "fields": [
                    "name_fr",
                    "name_en",
                    "description_fr",
                    "description_en",
                    "image",
                ]
            },
        ),
        (
            _("What the member gets"),
            {
                "fields": ["value", "sku", "partner_name", "voucher_valid_days"],
                "description": _(
                    "A discount needs its value; a free product its SKU; a partner reward the "
                    "partner's name."
                ),
            },
        ),
        (
            _("Cost"),
            {
                "fields": ["points_cost", "cost_amount", "stock"],
                "description": _(
                    "The stock goes down with each redemption and up with each cancellation; "
                    "change it here only to restock."
                ),
            },
        ),
        (
            _("Who can redeem, and when"),
            {
                "fields": [
                    "tiers",
                    "limit_per_member",
                    "limit_period",
                    "valid_from",
                    "valid_until",
                    "created_at",
                ]
            },
        ),
    ]

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None:
            # Its vouchers and tiers belong to the program: a reward never moves.
            fields.insert(0, "program")
        return fields

    def get_queryset(self, request):
        # Every column of the list in the one query of the page (filtered aggregates).
        return (
            super()
            .get_queryset(request)
            .annotate(
                _redeemed=Count("redemptions", filter=NOT_CANCELLED),
                _used=Count("redemptions", filter=Q(redemptions__status=Redemption.Status.USED)),
                _redeemed_cost=Coalesce(
                    Sum("redemptions__cost_amount", filter=NOT_CANCELLED),
                    Value(0),
                    output_field=DecimalField(max_digits=14, decimal_places=2),
                ),
            )
        )

    @admin.display(description=_("name"), ordering="name_fr")
    def display_name(self, obj):
        return obj.name

    @admin.display(description=_("stock left"), ordering="stock")
    def display_stock(self, obj):
        return gettext("unlimited") if obj.stock is None else obj.stock

    @admin.display(description=_("redeemed"), ordering="_redeemed")
    def redeemed_count(self, obj):
        return obj._redeemed

    @admin.display(description=_("used"), ordering="_used")
    def used_count(self, obj):
        return obj._used

    @admin.display(description=_("cost of redemptions"), ordering="_redeemed_cost")
    def redeemed_cost(self, obj):
        return obj._redeemed_cost

    @admin.display(description=_("available"))
    def validity(self, obj):
        start, end = (
            date_format(timezone.localtime(at), "SHORT_DATE_FORMAT") if at else None
            for at in (obj.valid_from, obj.valid_until)
        )
        if start and end:
            return gettext("from %(start)s to %(end)s") % {"start": start, "end": end}
        if start:
            return gettext("from %(start)s") % {"start": start}
        if end:
            return gettext("until %(end)s") % {"end": end}
        return gettext("always")

    def save_model(self, request, obj, form, change):
        # The stock is applied as the change made in the form (see services.save_reward):
        # redemptions move it while the form is open.
        services.save_reward(reward=obj, shown_stock=form.shown_stock() if change else None)


# Redemptions (vouchers) -------------------------------------------------------------------------


class CancelVoucherForm(forms.Form):
    reason = forms.CharField(
        label=_("Reason"),
        max_length=200,
        help_text=_("Recorded on the voucher and in the ledger with your user name."),
    )


def not_issued_message(redemption) -> str:
    return gettext("Only an issued voucher can be cancelled; this one is %(status)s.") % {
        "status": redemption.get_status_display().lower()
    }


@admin.register(Redemption)
class RedemptionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    change_form_template = "admin/rewards/redemption/change_form.html"
    change_list_template = "admin/rewards/redemption/change_list.html"
    list_display = [
        "display_code",
        "member",
        "reward",
        "status",
        "points_spent",
        "cost_amount",
        "issued_at",
        "expires_at",
        "used_at",
    ]
    list_filter = ["status", "channel", "program", "reward", "used_store"]
    # The search is by voucher code (with or without dashes, any case) and card number; see
    # get_search_results.
    search_fields = ["code", "member__card_number"]
    search_help_text = _("A voucher code (dashes and case do not matter) or a card number.")
    list_select_related = ["member", "reward"]
    date_hierarchy = "issued_at"
    show_full_result_count = False
    fieldsets = [
        (
            _("Voucher"),
            {
                "fields": [
                    "display_code",
                    "voucher_qr",
                    "status",
                    "reward",
                    "member",
                    "program",
                    "channel",
                ]
            },
        ),
        (
            _("Issue"),
            {
                "fields": [
                    "points_spent",
                    "cost_amount",
                    "issued_at",
                    "expires_at",
                    "issued_store",
                    "issued_by",
                    "debit_txn",
                ]
            },
        ),
        (_("Use"), {"fields": ["used_at", "used_store", "used_receipt_id"]}),
        (
            _("Cancellation or expiry"),
            {"fields": ["closed_at", "cancelled_by", "cancel_reason", "refund_txn"]},
        ),
    ]
    readonly_fields = [f for _name, opts in fieldsets for f in opts["fields"]]

    @admin.display(description=_("voucher code"), ordering="code")
    def display_code(self, obj):
        return services.format_code(obj.code)

    @admin.display(description=_("QR code"))
    def voucher_qr(self, obj):
        if obj is None or not obj.code:
            return "-"
        svg = qr_svg(
            obj.code,
            title=gettext("QR code of voucher %(code)s") % {"code": services.format_code(obj.code)},
            css_class="voucher-qr",
        )
        # segno escapes the title; the code is letters and digits.
        return mark_safe(svg)  # noqa: S308  # nosec B308, B703  # segno escapes the title; the rest is generated markup

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        code = services.normalize_code(term)
        query = Q(member__card_number=normalize_card_number(term))
        if code:
            query |= Q(code__startswith=code) if len(code) < services.CODE_LENGTH else Q(code=code)
        return queryset.filter(query), False

    def can_cancel(self, request) -> bool:
        """Cancelling needs the change permission on redemptions (the pages are read-only)."""
        codename = get_permission_codename("change", self.opts)
        return request.user.has_perm(f"{self.opts.app_label}.{codename}")

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "can_cancel": self.can_cancel(request)}
        return super().change_view(request, object_id, form_url, extra_context)

    def can_redeem(self, request) -> bool:
        """Redeeming for a member needs the add permission on redemptions."""
        codename = get_permission_codename("add", self.opts)
        return request.user.has_perm(f"{self.opts.app_label}.{codename}")

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_redeem": self.can_redeem(request)}
        return super().changelist_view(request, extra_context)

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "redeem/",
                self.admin_site.admin_view(lambda request: staff_redeem_view(self, request)),
                name="{}_{}_redeem".format(*info),
            ),
            path(
                "<path:object_id>/cancel/",
                self.admin_site.admin_view(self.cancel_view),
                name="{}_{}_cancel".format(*info),
            ),
            *super().get_urls(),
        ]

    def cancel_view(self, request, object_id):
        redemption = self.get_object(request, unquote(object_id))
        if redemption is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.can_cancel(request):
            raise PermissionDenied
        change_url = reverse(
            "admin:rewards_redemption_change",
            args=[redemption.pk],
            current_app=self.admin_site.name,
        )
        if request.method == "POST":
            form = CancelVoucherForm(request.POST)
            if form.is_valid() and redemption.status != Redemption.Status.ISSUED:
                # The service checks again under the lock; this gives the translated message.
                form.add_error(None, not_issued_message(redemption))
            elif form.is_valid():
                try:
                    services.cancel(
                        redemption=redemption,
                        reason=form.cleaned_data["reason"],
                        staff_user=request.user,
                    )
                except DomainError as exc:
                    add_domain_error(form, exc)
                else:
                    self.message_user(
                        request,
                        gettext(
                            "Voucher %(code)s cancelled: %(points)d points refunded to %(member)s."
                        )
                        % {
                            "code": services.format_code(redemption.code),
                            "points": redemption.points_spent,
                            "member": redemption.member,
                        },
                        messages.SUCCESS,
                    )
                    return HttpResponseRedirect(change_url)
        else:
            form = CancelVoucherForm()
        return render_action_form(
            self,
            request,
            "admin/rewards/redemption/cancel.html",
            {
                "title": gettext("Cancel voucher %(code)s")
                % {"code": services.format_code(redemption.code)},
                "submit_label": _("Cancel voucher"),
                "original": redemption,
                "redemption": redemption,
                "display_code": services.format_code(redemption.code),
                "object_label": services.format_code(redemption.code),
                "back_label": _("Back to the voucher"),
                "not_issued": (
                    not_issued_message(redemption)
                    if redemption.status != Redemption.Status.ISSUED
                    else ""
                ),
                "form": form,
                "change_url": change_url,
            },
        )


# Redeeming on a member's behalf -----------------------------------------------------------------


class StaffRedeemForm(forms.Form):
    card_number = forms.CharField(label=_("Card number"), max_length=20)
    reward = forms.ModelChoiceField(
        label=_("Reward"),
        queryset=Reward.objects.filter(is_active=True).select_related("program"),
    )

    def clean(self):
        cleaned = super().clean()
        card = normalize_card_number(cleaned.get("card_number") or "")
        reward = cleaned.get("reward")
        member = Member.objects.filter(card_number=card).select_related("program").first()
        if member is None:
            self.add_error("card_number", _("No member has this card number."))
        elif reward is not None and reward.program_id != member.program_id:
            self.add_error("reward", _("This reward belongs to another program."))
        cleaned["member"] = member
        return cleaned


def staff_redeem_view(model_admin, request):
    """Redeem a reward for a member, by staff (at the desk, on the phone): the same service as
    the portal and the tills, recorded with the staff user."""
    if not model_admin.can_redeem(request):
        raise PermissionDenied
    if request.method == "POST":
        form = StaffRedeemForm(request.POST)
        if form.is_valid():
            try:
                redemption = services.redeem(
                    member=form.cleaned_data["member"],
                    reward=form.cleaned_data["reward"],
                    channel=Redemption.Channel.STAFF,
                    staff_user=request.user,
                )
            except DomainError as exc:
                add_domain_error(form, exc, {"reward_id": "reward"})
            else:
                model_admin.message_user(
                    request,
                    gettext("Voucher %(code)s issued to %(member)s.")
                    % {
                        "code": services.format_code(redemption.code),
                        "member": form.cleaned_data["member"],
                    },
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(
                    reverse("admin:rewards_redemption_change", args=[redemption.pk])
                )
    else:
        form = StaffRedeemForm(initial={"card_number": request.GET.get("card", "")})
    return render_action_form(
        model_admin,
        request,
        "admin/rewards/redemption/redeem.html",
        {
            "title": _("Redeem a reward for a member"),
            "submit_label": _("Redeem"),
            "change_url": reverse("admin:rewards_redemption_changelist"),
            "form": form,
        },
    )
