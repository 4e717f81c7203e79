"""The reward catalogue and redemptions (vouchers)."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import translation
from django.utils.translation import gettext_lazy as _

from loyalty.models import Program, Store, Tier
from members.models import Member


class Reward(models.Model):
    class Kind(models.TextChoices):
        DISCOUNT_AMOUNT = "discount_amount", _("Discount voucher (fixed amount)")
        DISCOUNT_PERCENT = "discount_percent", _("Discount voucher (percentage)")
        FREE_PRODUCT = "free_product", _("Free product")
        GIFT = "gift", _("Gift or experience")
        PARTNER = "partner", _("Partner reward")

    class LimitPeriod(models.TextChoices):
        LIFETIME = "lifetime", _("Lifetime")
        DAY = "day", _("Per day")
        WEEK = "week", _("Per week")
        MONTH = "month", _("Per month")
        YEAR = "year", _("Per year")

    program = models.ForeignKey(
        Program, on_delete=models.PROTECT, related_name="rewards", verbose_name=_("program")
    )
    name_fr = models.CharField(_("name (French)"), max_length=120)
    name_en = models.CharField(_("name (English)"), max_length=120, blank=True)
    description_fr = models.TextField(_("description (French)"), blank=True)
    description_en = models.TextField(_("description (English)"), blank=True)
    image = models.ImageField(_("image"), upload_to="rewards/", blank=True)
    kind = models.CharField(_("type"), max_length=20, choices=Kind.choices)
    value = models.DecimalField(
        _("value"),
        max_digits=10,
        decimal_places=2,
        null=True,
        blank=True,
        help_text=_("The discount: an amount in the program currency, or a percentage."),
    )
    sku = models.CharField(
        _("SKU"), max_length=60, blank=True, help_text=_("The product given, for a free product.")
    )
    partner_name = models.CharField(_("partner"), max_length=120, blank=True)
    points_cost = models.PositiveIntegerField(_("points cost"))
    cost_amount = models.DecimalField(
        _("cost to the business"),
        max_digits=10,
        decimal_places=2,
        help_text=_("What one redemption costs the program, in its currency (for the ROI)."),
    )
    stock = models.PositiveIntegerField(
        _("stock left"),
        null=True,
        blank=True,
        help_text=_("Empty: unlimited. Goes down with each redemption, up with a cancellation."),
    )
    limit_per_member = models.PositiveIntegerField(
        _("limit per member"), null=True, blank=True, help_text=_("Empty: no limit.")
    )
    limit_period = models.CharField(
        _("limit period"), max_length=10, choices=LimitPeriod.choices, default=LimitPeriod.LIFETIME
    )
    valid_from = models.DateTimeField(_("available from"), null=True, blank=True)
    valid_until = models.DateTimeField(_("available until"), null=True, blank=True)
    voucher_valid_days = models.PositiveSmallIntegerField(_("voucher valid for (days)"), default=90)
    tiers = models.ManyToManyField(
        Tier,
        blank=True,
        related_name="rewards",
        verbose_name=_("tiers allowed"),
        help_text=_("Empty: every tier."),
    )
    is_active = models.BooleanField(_("active"), default=True)
    display_order = models.PositiveSmallIntegerField(_("display order"), default=0)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("reward")
        verbose_name_plural = _("rewards")
        ordering = ["program", "display_order", "points_cost", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(points_cost__gt=0), name="reward_points_positive"),
            models.CheckConstraint(
                condition=Q(cost_amount__gte=0), name="reward_cost_not_negative"
            ),
            models.CheckConstraint(
                condition=~Q(kind__in=["discount_amount", "discount_percent"])
                | Q(value__isnull=False, value__gt=0),
                name="reward_discount_has_value",
            ),
            models.CheckConstraint(
                condition=~Q(kind="discount_percent") | Q(value__lte=100),
                name="reward_percent_at_most_100",
            ),
            models.CheckConstraint(
                condition=Q(valid_until__isnull=True)
                | Q(valid_from__isnull=True)
                | Q(valid_until__gt=models.F("valid_from")),
                name="reward_validity_ordered",
            ),
            models.CheckConstraint(
                condition=Q(limit_per_member__isnull=True) | Q(limit_per_member__gte=1),
                name="reward_limit_at_least_one",
            ),
        ]
        indexes = [
            models.Index(fields=["program", "is_active", "display_order"], name="reward_catalogue")
        ]

    def __str__(self):
        return self.name

    @property
    def name(self) -> str:
        if translation.get_language() == "en" and self.name_en:
            return self.name_en
        return self.name_fr

    @property
    def description(self) -> str:
        if translation.get_language() == "en" and self.description_en:
            return self.description_en
        return self.description_fr

    def clean(self):
        from django.core.exceptions import ValidationError

        if self.kind in (self.Kind.DISCOUNT_AMOUNT, self.Kind.DISCOUNT_PERCENT):
            if not self.value or self.value <= 0:
                raise ValidationError({"value": _("A discount needs a positive value.")})
            if self.kind == self.Kind.DISCOUNT_PERCENT and self.value > 100:
                raise ValidationError({"value": _("A percentage is at most 100.")})
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            raise ValidationError({"valid_until": _("The end must come after the start.")})


class Redemption(models.Model):
    """A reward redeemed by a member: the points debited, and the voucher issued."""

    class Status(models.TextChoices):
        ISSUED = "issued", _("Issued")
        USED = "used", _("Used")
        EXPIRED = "expired", _("Expired")
        CANCELLED = "cancelled", _("Cancelled")

    class Channel(models.TextChoices):
        PORTAL = "portal", _("Member portal")
        STAFF = "staff", _("Staff")
        POS = "pos", _("Point of sale")

    program = models.ForeignKey(
        Program,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("program"),
        db_index=False,  # covered by a composite index below
    )
    reward = models.ForeignKey(
        Reward, on_delete=models.PROTECT, related_name="redemptions", verbose_name=_("reward")
    )
    member = models.ForeignKey(
        Member,
        on_delete=models.PROTECT,
        related_name="redemptions",
        verbose_name=_("member"),
        db_index=False,  # covered by a composite index below
    )
    code = models.CharField(_("voucher code"), max_length=20, unique=True)
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.ISSUED
    )
    channel = models.CharField(_("channel"), max_length=10, choices=Channel.choices)
    points_spent = models.PositiveIntegerField(_("points spent"))
    cost_amount = models.DecimalField(_("cost to the business"), max_digits=10, decimal_places=2)
    issued_at = models.DateTimeField(_("issued at"))
    expires_at = models.DateTimeField(_("expires at"))
    issued_store = models.ForeignKey(
        Store,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("issued at store"),
    )
    issued_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("issued by"),
    )
    debit_txn = models.UUIDField(_("ledger transaction"), editable=False)
    used_at = models.DateTimeField(_("used at"), null=True, blank=True)
    used_store = models.ForeignKey(
        Store,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("used at store"),
    )
    used_receipt_id = models.CharField(_("used on receipt"), max_length=64, blank=True)
    closed_at = models.DateTimeField(_("cancelled or expired at"), null=True, blank=True)
    refund_txn = models.UUIDField(_("refund transaction"), null=True, blank=True, editable=False)
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("cancelled by"),
    )
    cancel_reason = models.CharField(_("reason"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("redemption")
        verbose_name_plural = _("redemptions")
        ordering = ["-issued_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(status="used") | (Q(used_at__isnull=False) & ~Q(used_receipt_id="")),
                name="redemption_used_has_receipt",
            ),
            models.CheckConstraint(
                condition=~Q(status="cancelled") | ~Q(cancel_reason=""),
                name="redemption_cancel_has_reason",
            ),
        ]
        indexes = [
            models.Index(fields=["member", "reward", "issued_at"], name="redemption_member_reward"),
            models.Index(fields=["program", "issued_at"], name="redemption_program_issued"),
            models.Index(
                fields=["expires_at"], condition=Q(status="issued"), name="redemption_open"
            ),
        ]

    def __str__(self):
        return self.code
