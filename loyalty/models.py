"""The program core: programs, their stores and API keys, tiers, earning rules, costs, job runs."""

import zoneinfo
from decimal import Decimal

from django.conf import settings
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


class Tier(models.Model):
    program = models.ForeignKey(
        Program, on_delete=models.CASCADE, related_name="tiers", verbose_name=_("program")
    )
    name = models.CharField(_("name"), max_length=60)
    rank = models.PositiveSmallIntegerField(
        _("rank"), help_text=_("0 is the entry tier; higher ranks are better tiers.")
    )
    qualify_threshold = models.DecimalField(
        _("threshold to qualify"),
        max_digits=12,
        decimal_places=2,
        default=Decimal("0"),
        help_text=_("Qualifying spend (in currency) or points over the window to reach the tier."),
    )
    retain_threshold = models.DecimalField(
        _("threshold to keep"),
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        help_text=_("Lower bar to keep the tier at requalification; empty means the same bar."),
    )
    earn_multiplier = models.DecimalField(
        _("earning multiplier"),
        max_digits=5,
        decimal_places=2,
        default=Decimal("1"),
    )
    perks = models.TextField(
        _("perks"), blank=True, help_text=_("Benefits of the tier shown to members, one a line.")
    )

    class Meta:
        verbose_name = _("tier")
        verbose_name_plural = _("tiers")
        ordering = ["program", "rank"]
        constraints = [
            models.UniqueConstraint(
                fields=["program", "rank"], name="tier_rank_unique_per_program"
            ),
            models.UniqueConstraint(
                fields=["program", "name"], name="tier_name_unique_per_program"
            ),
            models.CheckConstraint(
                condition=Q(earn_multiplier__gt=0), name="tier_earn_multiplier_positive"
            ),
            models.CheckConstraint(
                condition=Q(qualify_threshold__gte=0), name="tier_qualify_threshold_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(retain_threshold__isnull=True)
                | Q(retain_threshold__gte=0, retain_threshold__lte=models.F("qualify_threshold")),
                name="tier_retain_threshold_within_qualify",
            ),
        ]

    def __str__(self):
        return self.name

    def save(self, *args, **kwargs):
        super().save(*args, **kwargs)
        _touch_program(self.program_id)

    def delete(self, *args, **kwargs):
        result = super().delete(*args, **kwargs)
        _touch_program(self.program_id)
        return result

    @property
    def perk_list(self):
        return [line.strip() for line in self.perks.splitlines() if line.strip()]


class EarningRule(models.Model):
    """One cell of a program's earning grid, scoped by channel, store, category or SKU.

    How rules combine is defined once, in loyalty/rules.py.
    """

    class Kind(models.TextChoices):
        RATE = "rate", _("Points per currency unit (replaces the base rate)")
        MULTIPLIER = "multiplier", _("Multiplier on points")
        EXCLUSION = "exclusion", _("Excluded: earns no points")
        MINIMUM_BASKET = "minimum_basket", _("Minimum basket to earn points")

    program = models.ForeignKey(
        Program, on_delete=models.CASCADE, related_name="earning_rules", verbose_name=_("program")
    )
    name = models.CharField(_("name"), max_length=120)
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    value = models.DecimalField(
        _("value"),
        max_digits=10,
        decimal_places=4,
        default=Decimal("0"),
        help_text=_("Rate, multiplier or minimum basket amount, by kind; ignored for exclusions."),
    )
    channel = models.CharField(
        _("channel"),
        max_length=12,
        choices=Store.Channel.choices,
        blank=True,
        help_text=_("Empty: every channel."),
    )
    store = models.ForeignKey(
        Store,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="earning_rules",
        verbose_name=_("store"),
        help_text=_("Empty: every store."),
    )
    category = models.CharField(
        _("product category"), max_length=60, blank=True, help_text=_("Empty: every category.")
    )
    sku = models.CharField(_("SKU"), max_length=60, blank=True, help_text=_("Empty: every SKU."))
    priority = models.SmallIntegerField(
        _("priority"), default=0, help_text=_("Breaks ties between equally specific rate rules.")
    )
    is_active = models.BooleanField(_("active"), default=True)
    valid_from = models.DateField(_("valid from"), null=True, blank=True)
    valid_until = models.DateField(_("valid until"), null=True, blank=True)

    class Meta:
        verbose_name = _("earning rule")
        verbose_name_plural = _("earning rules")
        ordering = ["program", "kind", "-priority", "name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind="exclusion")
                | Q(kind="minimum_basket", value__gte=0)
                | Q(kind__in=["rate", "multiplier"], value__gt=0),
                name="earning_rule_value_positive",
            ),
            models.CheckConstraint(
                condition=Q(valid_until__isnull=True)
                | Q(valid_from__isnull=True)
                | Q(valid_until__gte=models.F("valid_from")),
                name="earning_rule_validity_ordered",
            ),
            models.CheckConstraint(
                condition=~Q(kind="minimum_basket") | (Q(category="") & Q(sku="")),
                name="earning_rule_minimum_basket_not_per_product",
            ),
        ]

    def __str__(self):
        return self.name

    def save(self, *args, **kwargs):
        super().save(*args, **kwargs)
        _touch_program(self.program_id)

    def delete(self, *args, **kwargs):
        result = super().delete(*args, **kwargs)
        _touch_program(self.program_id)
        return result

    def clean(self):
        if self.store_id and self.store.program_id != self.program_id:
            raise ValidationError({"store": _("This store belongs to another program.")})
        if self.kind in (self.Kind.RATE, self.Kind.MULTIPLIER) and self.value <= 0:
            raise ValidationError({"value": _("A rate or multiplier must be positive.")})
        if self.kind == self.Kind.MINIMUM_BASKET and (self.category or self.sku):
            raise ValidationError(
                {"category": _("A minimum basket applies to the whole basket, not to a product.")}
            )


class ProgramCost(models.Model):
    """A cost of running the program: the denominator of its ROI (see docs/kpis.md)."""

    class Category(models.TextChoices):
        DESIGN_LAUNCH = "design_launch", _("Design and launch")
        STAFF = "staff", _("Staff")
        CUSTOMER_SERVICE = "customer_service", _("Customer service")
        TECHNOLOGY = "technology", _("Technology")
        DATA_ANALYSIS = "data_analysis", _("Data analysis")
        TRAINING = "training", _("Training")
        MAINTENANCE_SECURITY = "maintenance_security", _("Maintenance and security")
        OTHER = "other", _("Other")

    class Kind(models.TextChoices):
        ONE_OFF = "one_off", _("One-off, amortised")
        RECURRING = "recurring", _("Recurring, per month")

    program = models.ForeignKey(
        Program, on_delete=models.CASCADE, related_name="costs", verbose_name=_("program")
    )
    category = models.CharField(_("category"), max_length=24, choices=Category.choices)
    label = models.CharField(_("label"), max_length=120)
    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices)
    cost_amount = models.DecimalField(
        _("amount"),
        max_digits=14,
        decimal_places=2,
        help_text=_("In the program currency: the whole one-off cost, or the monthly cost."),
    )
    starts_on = models.DateField(_("starts on"))
    ends_on = models.DateField(
        _("ends on"), null=True, blank=True, help_text=_("Recurring costs only; empty: ongoing.")
    )
    amortisation_months = models.PositiveSmallIntegerField(
        _("amortised over (months)"),
        null=True,
        blank=True,
        help_text=_("One-off costs only: spread evenly over this many months."),
    )

    class Meta:
        verbose_name = _("program cost")
        verbose_name_plural = _("program costs")
        ordering = ["program", "starts_on", "label"]
        constraints = [
            models.CheckConstraint(
                condition=Q(cost_amount__gt=0), name="program_cost_amount_positive"
            ),
            models.CheckConstraint(
                condition=Q(
                    kind="one_off",
                    amortisation_months__isnull=False,
                    amortisation_months__gte=1,
                    ends_on__isnull=True,
                )
                | Q(kind="recurring", amortisation_months__isnull=True),
                name="program_cost_kind_fields",
            ),
            models.CheckConstraint(
                condition=Q(ends_on__isnull=True) | Q(ends_on__gte=models.F("starts_on")),
                name="program_cost_dates_ordered",
            ),
        ]

    def __str__(self):
        return self.label

    def clean(self):
        if self.kind == self.Kind.ONE_OFF:
            if not self.amortisation_months:
                raise ValidationError(
                    {"amortisation_months": _("Say over how many months to amortise it.")}
                )
            if self.ends_on:
                raise ValidationError({"ends_on": _("A one-off cost has no end date.")})
        elif self.kind == self.Kind.RECURRING and self.amortisation_months:
            raise ValidationError({"amortisation_months": _("Only one-off costs are amortised.")})


class JobRun(models.Model):
    """One run of a scheduled job: when it ran, what it did, and any error. Shown to staff."""

    class Status(models.TextChoices):
        RUNNING = "running", _("Running")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")

    name = models.CharField(_("job"), max_length=80)
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.RUNNING
    )
    started_at = models.DateTimeField(_("started"))
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    is_dry_run = models.BooleanField(_("dry run"), default=False)
    summary = models.JSONField(_("summary"), default=dict, blank=True)
    error = models.TextField(_("error"), blank=True)
    triggered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        verbose_name=_("triggered by"),
    )

    class Meta:
        verbose_name = _("job run")
        verbose_name_plural = _("job runs")
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["name", "-started_at"], name="jobrun_name_started")]

    def __str__(self):
        return f"{self.name} @ {self.started_at:%Y-%m-%d %H:%M}"


class IdempotencyRecord(models.Model):
    """The first answer to a POST made with an Idempotency-Key, kept to answer retries.

    Claimed in the same transaction as the writes it protects: if they roll back, so does it.
    """

    api_key = models.ForeignKey(StoreAPIKey, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField()
    response_body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("idempotency record")
        verbose_name_plural = _("idempotency records")
        constraints = [
            models.UniqueConstraint(fields=["api_key", "key"], name="idempotency_key_unique"),
        ]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created")]

    def __str__(self):
        return f"{self.key} ({self.method} {self.path})"
