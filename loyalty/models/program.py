"""Programs, their stores and the stores' API keys."""

import zoneinfo
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from rest_framework_api_key.models import AbstractAPIKey

currency_validator = RegexValidator(r"^[A-Z]{3}$", _("Use a three-letter ISO 4217 code, e.g. EUR."))


def validate_time_zone(value):
    if value not in zoneinfo.available_timezones():
        raise ValidationError(_("Unknown time zone: %(tz)s"), params={"tz": value})


class Program(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", _("Draft")
        ACTIVE = "active", _("Active")
        PAUSED = "paused", _("Paused")
        CLOSED = "closed", _("Closed")

    class Rounding(models.TextChoices):
        FLOOR = "floor", _("Round down")
        NEAREST = "nearest", _("Round to nearest (half up)")
        CEILING = "ceiling", _("Round up")

    class ExpiryPolicy(models.TextChoices):
        NONE = "none", _("Points never expire")
        AFTER_EARNING = "after_earning", _("N months after being earned (first in, first out)")
        AFTER_INACTIVITY = "after_inactivity", _("After N months without activity")

    class TierMetric(models.TextChoices):
        SPEND = "spend", _("Qualifying spend")
        POINTS = "points", _("Qualifying points earned")

    class TierWindow(models.TextChoices):
        ROLLING = "rolling", _("Rolling months")
        CALENDAR_YEAR = "calendar_year", _("Calendar year")

    class TierDowngrade(models.TextChoices):
        ONE_STEP = "one_step", _("One tier at a time")
        TO_QUALIFIED = "to_qualified", _("Straight to the tier the metric supports")

    name = models.CharField(_("name"), max_length=120)
    slug = models.SlugField(_("slug"), max_length=60, unique=True)
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.ACTIVE
    )
    currency = models.CharField(
        _("currency"), max_length=3, default="EUR", validators=[currency_validator]
    )
    time_zone = models.CharField(
        _("time zone"), max_length=64, default="Europe/Paris", validators=[validate_time_zone]
    )
    points_name = models.CharField(
        _("name of the points"),
        max_length=40,
        default="points",
        help_text=_("What members see, e.g. points, stars, miles."),
    )
    base_earn_rate = models.DecimalField(
        _("base earning rate"),
        max_digits=8,
        decimal_places=4,
        default=Decimal("1"),
        validators=[MinValueValidator(Decimal("0.0001"))],
        help_text=_("Points earned per unit of currency spent, before rules and tiers."),
    )
    rounding = models.CharField(
        _("rounding"),
        max_length=10,
        choices=Rounding.choices,
        default=Rounding.FLOOR,
        help_text=_("How fractional points of each breakdown line become whole points."),
    )
    return_window_days = models.PositiveSmallIntegerField(
        _("return window (days)"),
        default=30,
        help_text=_("Points earned stay pending this many days, then become available."),
    )
    backdating_days = models.PositiveSmallIntegerField(
        _("back-dating window (days)"),
        default=30,
        help_text=_("How old a purchase posted by a POS may be."),
    )
    expiry_policy = models.CharField(
        _("expiry policy"),
        max_length=20,
        choices=ExpiryPolicy.choices,
        default=ExpiryPolicy.NONE,
    )
    expiry_months = models.PositiveSmallIntegerField(
        _("expiry after (months)"),
        null=True,
        blank=True,
    )
    tier_metric = models.CharField(
        _("tier qualification metric"),
        max_length=10,
        choices=TierMetric.choices,
        default=TierMetric.SPEND,
        help_text=_("Never the spendable balance: redeeming must not cost a member a tier."),
    )
    tier_window = models.CharField(
        _("tier qualification window"),
        max_length=15,
        choices=TierWindow.choices,
        default=TierWindow.ROLLING,
    )
    tier_window_months = models.PositiveSmallIntegerField(
        _("rolling window (months)"),
        default=12,
        validators=[MinValueValidator(1)],
    )
    tier_grace_periods = models.PositiveSmallIntegerField(
        _("tier grace (periods)"),
        default=1,
        help_text=_(
            "A tier earned is kept until the end of this many periods after the one it was "
            "earned in (calendar years, or rolling windows), then reviewed. 0: reviewed nightly."
        ),
    )
    tier_downgrade_policy = models.CharField(
        _("downgrade policy"),
        max_length=15,
        choices=TierDowngrade.choices,
        default=TierDowngrade.ONE_STEP,
    )
    refund_expired_vouchers = models.BooleanField(
        _("refund expired vouchers"),
        default=False,
        help_text=_("Give the points back when a voucher expires unused."),
    )
    gross_margin_rate = models.DecimalField(
        _("gross margin rate"),
        max_digits=5,
        decimal_places=4,
        default=Decimal("0.35"),
        help_text=_("Share of revenue kept as gross margin (0.35 = 35%), for ROI."),
    )
    point_cost_amount = models.DecimalField(
        _("cost of one point"),
        max_digits=10,
        decimal_places=6,
        default=Decimal("0.01"),
        help_text=_("What one point costs the business when redeemed, in the program currency."),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("program")
        verbose_name_plural = _("programs")
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(base_earn_rate__gt=0), name="program_base_earn_rate_positive"
            ),
            models.CheckConstraint(
                condition=Q(gross_margin_rate__gte=0, gross_margin_rate__lte=1),
                name="program_gross_margin_rate_0_1",
            ),
            models.CheckConstraint(
                condition=Q(point_cost_amount__gte=0), name="program_point_cost_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(expiry_policy="none", expiry_months__isnull=True)
                | (~Q(expiry_policy="none") & Q(expiry_months__isnull=False, expiry_months__gte=1)),
                name="program_expiry_months_match_policy",
            ),
            models.CheckConstraint(
                condition=Q(currency__regex=r"^[A-Z]{3}$"), name="program_currency_iso"
            ),
            models.CheckConstraint(
                condition=~Q(tier_window="calendar_year") | Q(tier_grace_periods__gte=1),
                name="program_calendar_tiers_kept_a_period",
            ),
        ]

    def __str__(self):
        return self.name

    def clean(self):
        if self.tier_window == self.TierWindow.CALENDAR_YEAR and self.tier_grace_periods < 1:
            raise ValidationError(
                {
                    "tier_grace_periods": _(
                        "With a calendar-year window, keep tiers at least one period: with 0, "
                        "every tier would be lost on 2 January."
                    )
                }
            )
        if self.expiry_policy == self.ExpiryPolicy.NONE:
            self.expiry_months = None
        elif not self.expiry_months:
            raise ValidationError({"expiry_months": _("Say after how many months points expire.")})

    @property
    def tzinfo(self):
        return zoneinfo.ZoneInfo(self.time_zone)


def _touch_program(program_id):
    # The program's updated_at is the version of its earning grid and tiers, cached per process
    # (loyalty/selectors.py): every change of a rule or a tier moves it forward.
    Program.objects.filter(pk=program_id).update(updated_at=timezone.now())


class Store(models.Model):
    """A point of sale or sales channel of a program; POS systems authenticate as a store."""

    class Channel(models.TextChoices):
        SHOP = "shop", _("Shop")
        WEB = "web", _("Web")
        APP = "app", _("Mobile app")
        PHONE = "phone", _("Phone")
        MARKETPLACE = "marketplace", _("Marketplace")
        PARTNER = "partner", _("Partner")

    program = models.ForeignKey(
        Program, on_delete=models.PROTECT, related_name="stores", verbose_name=_("program")
    )
    name = models.CharField(_("name"), max_length=120)
    slug = models.SlugField(_("slug"), max_length=60)
    channel = models.CharField(
        _("channel"), max_length=12, choices=Channel.choices, default=Channel.SHOP
    )
    city = models.CharField(_("city"), max_length=80, blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("store or channel")
        verbose_name_plural = _("stores and channels")
        ordering = ["program", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["program", "slug"], name="store_slug_unique_per_program"
            ),
        ]

    def __str__(self):
        return f"{self.name} ({self.get_channel_display()})"


class StoreAPIKey(AbstractAPIKey):
    """A POS API key. Only its hash is stored; the key itself is shown once, at creation."""

    store = models.ForeignKey(
        Store, on_delete=models.CASCADE, related_name="api_keys", verbose_name=_("store")
    )

    class Meta(AbstractAPIKey.Meta):
        verbose_name = _("store API key")
        verbose_name_plural = _("store API keys")
