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


class JobRunQuerySet(models.QuerySet):
    def expired(self, now=None):
        """Runs still marked running whose worker has not renewed the lease in time."""
        return self.filter(status=JobRun.Status.RUNNING, lease_expires_at__lt=now or timezone.now())


class JobRun(models.Model):
    """One run of a scheduled job: when it ran, what it did, and any error. Shown to staff.

    A running run holds a lease that its worker renews (loyalty/jobs.py); a run whose lease
    expired is abandoned: its worker died, and the summary says what it had done by then.
    """

    class Status(models.TextChoices):
        RUNNING = "running", _("Running")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")
        ABANDONED = "abandoned", _("Abandoned")

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
    heartbeat_at = models.DateTimeField(_("last heartbeat"), null=True, blank=True)
    # Without a lease (rows not written by loyalty.jobs) a running row is never abandoned.
    lease_expires_at = models.DateTimeField(_("lease expires"), null=True, blank=True)
    worker_host = models.CharField(_("worker host"), max_length=255, blank=True)
    worker_pid = models.PositiveIntegerField(_("worker process id"), null=True, blank=True)

    objects = JobRunQuerySet.as_manager()

    class Meta:
        verbose_name = _("job run")
        verbose_name_plural = _("job runs")
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["name", "-started_at"], name="jobrun_name_started"),
            # The sweep of expired leases reads the few running rows only.
            models.Index(
                fields=["lease_expires_at"], condition=Q(status="running"), name="jobrun_lease"
            ),
        ]

    def __str__(self):
        return f"{self.name} @ {self.started_at:%Y-%m-%d %H:%M}"

    @property
    def is_lease_expired(self) -> bool:
        """Still marked running, but its worker stopped renewing the lease."""
        return (
            self.status == self.Status.RUNNING
            and self.lease_expires_at is not None
            and self.lease_expires_at < timezone.now()
        )

    @property
    def shown_status(self) -> str:
        """The status as staff should read it: abandoned once the lease has expired, even
        before a sweep has written it."""
        return self.Status.ABANDONED if self.is_lease_expired else self.status


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


# Campaigns and segments -----------------------------------------------------------------------


def _comma_list(text: str) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


class Segment(models.Model):
    """A rule-based group of members, recomputed nightly in SQL (members/campaigns/segments.py).

    Every condition that is set must hold (AND). RFM scores are quintiles (1 to 5, 5 best)
    among the members who bought in the last 365 days; the others score 0.
    """

    program = models.ForeignKey(
        Program, on_delete=models.CASCADE, related_name="segments", verbose_name=_("program")
    )
    name = models.CharField(_("name"), max_length=120)
    description = models.TextField(_("description"), blank=True)
    min_recency_score = models.PositiveSmallIntegerField(
        _("minimum recency score"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text=_("1 to 5; 5 = bought most recently. Empty: any."),
    )
    min_frequency_score = models.PositiveSmallIntegerField(
        _("minimum frequency score"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text=_("1 to 5; 5 = most purchases in the last 365 days. Empty: any."),
    )
    min_monetary_score = models.PositiveSmallIntegerField(
        _("minimum monetary score"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text=_("1 to 5; 5 = spent most in the last 365 days. Empty: any."),
    )
    inactive_days = models.PositiveIntegerField(
        _("inactive for at least (days)"),
        null=True,
        blank=True,
        help_text=_("No purchase for at least this many days. Empty: any."),
    )
    tier = models.ForeignKey(
        Tier,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("tier"),
        help_text=_("Empty: any tier."),
    )
    enrolled_from = models.DateField(
        _("enrolled on or after"), null=True, blank=True, help_text=_("In the program's time zone.")
    )
    enrolled_until = models.DateField(
        _("enrolled before"), null=True, blank=True, help_text=_("In the program's time zone.")
    )
    member_count = models.PositiveIntegerField(_("members"), default=0, editable=False)
    refreshed_at = models.DateTimeField(_("refreshed at"), null=True, blank=True, editable=False)

    class Meta:
        verbose_name = _("segment")
        verbose_name_plural = _("segments")
        ordering = ["program", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["program", "name"], name="segment_name_unique_per_program"
            ),
            models.CheckConstraint(
                condition=Q(min_recency_score__isnull=True)
                | Q(min_recency_score__gte=1, min_recency_score__lte=5),
                name="segment_recency_score_1_5",
            ),
            models.CheckConstraint(
                condition=Q(min_frequency_score__isnull=True)
                | Q(min_frequency_score__gte=1, min_frequency_score__lte=5),
                name="segment_frequency_score_1_5",
            ),
            models.CheckConstraint(
                condition=Q(min_monetary_score__isnull=True)
                | Q(min_monetary_score__gte=1, min_monetary_score__lte=5),
                name="segment_monetary_score_1_5",
            ),
        ]

    def __str__(self):
        return self.name

    def clean(self):
        errors = {}
        for field in ("min_recency_score", "min_frequency_score", "min_monetary_score"):
            value = getattr(self, field)
            if value is not None and not 1 <= value <= 5:
                errors[field] = _("A score is between 1 and 5.")
        if self.tier_id and self.program_id and self.tier.program_id != self.program_id:
            errors["tier"] = _("This tier belongs to another program.")
        if self.enrolled_from and self.enrolled_until and self.enrolled_until <= self.enrolled_from:
            errors["enrolled_until"] = _("The end of the cohort must be after its start.")
        if errors:
            raise ValidationError(errors)


class Campaign(models.Model):
    """A targeted bonus: extra itemised points on purchases (or on a lifecycle event), with
    conditions, stacking, budgets and a hold-out control group.

    How campaigns combine with the earning grid and with each other is defined once, in
    loyalty/rules.py (`add_campaigns`); budgets and hold-outs are applied in members/campaigns/.
    """

    class Status(models.TextChoices):
        DRAFT = "draft", _("Draft")
        SCHEDULED = "scheduled", _("Scheduled")
        ACTIVE = "active", _("Active")
        PAUSED = "paused", _("Paused")
        ENDED = "ended", _("Ended")

    class Trigger(models.TextChoices):
        PURCHASE = "purchase", _("Purchase")
        WELCOME = "welcome", _("Welcome (enrolment)")
        BIRTHDAY = "birthday", _("Birthday")
        REFERRAL = "referral", _("Referral")
        REACTIVATION = "reactivation", _("Reactivation of inactive members")

    class Effect(models.TextChoices):
        MULTIPLIER = "multiplier", _("Multiplier on the points of the purchase")
        FIXED = "fixed", _("Fixed bonus points")
        PER_UNIT = "per_unit", _("Bonus points per currency unit")

    class Period(models.TextChoices):
        NONE = "", _("No periodic cap")
        DAY = "day", _("Per day")
        WEEK = "week", _("Per week")
        MONTH = "month", _("Per month")

    # Statuses under which a campaign applies, within its dates.
    RUNNING = (Status.SCHEDULED, Status.ACTIVE)
    WEEKDAYS = [
        (0, _("Monday")),
        (1, _("Tuesday")),
        (2, _("Wednesday")),
        (3, _("Thursday")),
        (4, _("Friday")),
        (5, _("Saturday")),
        (6, _("Sunday")),
    ]

    program = models.ForeignKey(
        Program, on_delete=models.CASCADE, related_name="campaigns", verbose_name=_("program")
    )
    name = models.CharField(_("name"), max_length=120)
    description = models.TextField(_("description"), blank=True)
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.DRAFT
    )
    trigger = models.CharField(
        _("given on"), max_length=12, choices=Trigger.choices, default=Trigger.PURCHASE
    )
    starts_at = models.DateTimeField(_("starts at"))
    ends_at = models.DateTimeField(
        _("ends at"), null=True, blank=True, help_text=_("Exclusive. Empty: open-ended.")
    )
    # Effect
    effect = models.CharField(_("effect"), max_length=10, choices=Effect.choices)
    effect_value = models.DecimalField(
        _("value"),
        max_digits=10,
        decimal_places=4,
        help_text=_(
            "Multiplier (2 = double points), whole bonus points, or points per currency unit."
        ),
    )
    target_categories = models.CharField(
        _("on categories"),
        max_length=500,
        blank=True,
        help_text=_("Comma-separated. The lines the effect applies to; empty: every line."),
    )
    target_skus = models.CharField(
        _("on SKUs"),
        max_length=500,
        blank=True,
        help_text=_("Comma-separated. The lines the effect applies to; empty: every line."),
    )
    # Conditions (every one that is set must hold)
    tiers = models.ManyToManyField(
        Tier, blank=True, related_name="+", verbose_name=_("tiers"), help_text=_("Empty: any.")
    )
    stores = models.ManyToManyField(
        Store, blank=True, related_name="+", verbose_name=_("stores"), help_text=_("Empty: any.")
    )
    channels = models.JSONField(_("channels"), default=list, blank=True)
    weekdays = models.JSONField(_("days of the week"), default=list, blank=True)
    hour_from = models.PositiveSmallIntegerField(
        _("from hour"),
        null=True,
        blank=True,
        help_text=_("0 to 23, in the program's time zone. Empty: all day."),
    )
    hour_until = models.PositiveSmallIntegerField(
        _("until hour"),
        null=True,
        blank=True,
        help_text=_("1 to 24, exclusive; before the start hour: overnight."),
    )
    min_basket_amount = models.DecimalField(
        _("minimum basket"), max_digits=12, decimal_places=2, null=True, blank=True
    )
    basket_categories = models.CharField(
        _("basket contains a category"),
        max_length=500,
        blank=True,
        help_text=_("Comma-separated; at least one line of one of them must be bought."),
    )
    basket_skus = models.CharField(
        _("basket contains a SKU"),
        max_length=500,
        blank=True,
        help_text=_("Comma-separated; at least one of them must be bought."),
    )
    purchase_number = models.PositiveIntegerField(
        _("member's n-th purchase"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text=_("1: the member's first purchase. Empty: any."),
    )
    enrolled_since = models.DateField(_("enrolled on or after"), null=True, blank=True)
    enrolled_before = models.DateField(_("enrolled before"), null=True, blank=True)
    segment = models.ForeignKey(
        Segment,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="campaigns",
        verbose_name=_("segment"),
    )
    # Stacking
    is_exclusive = models.BooleanField(
        _("exclusive"),
        default=False,
        help_text=_("An exclusive campaign never combines with another one."),
    )
    priority = models.SmallIntegerField(
        _("priority"),
        default=0,
        help_text=_("The campaign of highest priority decides when an exclusive one is involved."),
    )
    # Budget
    budget_points = models.PositiveIntegerField(_("budget (points)"), null=True, blank=True)
    budget_amount = models.DecimalField(
        _("budget (money)"),
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        help_text=_("Points x the program's cost of one point."),
    )
    budget_period = models.CharField(
        _("periodic cap"), max_length=5, choices=Period.choices, blank=True, default=""
    )
    period_budget_points = models.PositiveIntegerField(
        _("cap per period (points)"), null=True, blank=True
    )
    period_budget_amount = models.DecimalField(
        _("cap per period (money)"), max_digits=12, decimal_places=2, null=True, blank=True
    )
    budget_per_store = models.BooleanField(
        _("caps per store"),
        default=False,
        help_text=_("Each store has its own caps instead of sharing them."),
    )
    # Control group
    holdout_percent = models.DecimalField(
        _("hold-out (%)"),
        max_digits=5,
        decimal_places=2,
        default=Decimal("0"),
        help_text=_("Share of eligible members who do not get the bonus, to measure uplift."),
    )
    # Lifecycle options
    welcome_after_first_purchase = models.BooleanField(
        _("welcome bonus after the first purchase"), default=False
    )
    birthday_on_day = models.BooleanField(
        _("birthday bonus on the day"),
        default=True,
        help_text=_("Otherwise at the start of the birthday month."),
    )
    referral_limit = models.PositiveIntegerField(
        _("referral bonuses per referrer"), null=True, blank=True, help_text=_("Empty: no limit.")
    )
    inactive_months = models.PositiveSmallIntegerField(
        _("inactive for (months)"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text=_("Reactivation: months without activity."),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("campaign")
        verbose_name_plural = _("campaigns")
        ordering = ["program", "-starts_at", "name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__isnull=True) | Q(ends_at__gt=models.F("starts_at")),
                name="campaign_dates_ordered",
            ),
            models.CheckConstraint(
                condition=Q(effect_value__gt=0), name="campaign_effect_value_positive"
            ),
            models.CheckConstraint(
                condition=Q(holdout_percent__gte=0, holdout_percent__lt=100),
                name="campaign_holdout_0_100",
            ),
            models.CheckConstraint(
                condition=Q(hour_from__isnull=True) | Q(hour_from__lte=23),
                name="campaign_hour_from_0_23",
            ),
            models.CheckConstraint(
                condition=Q(hour_until__isnull=True) | Q(hour_until__gte=1, hour_until__lte=24),
                name="campaign_hour_until_1_24",
            ),
            models.CheckConstraint(
                condition=Q(trigger="purchase") | Q(effect="fixed"),
                name="campaign_lifecycle_fixed_bonus",
            ),
        ]
        indexes = [models.Index(fields=["program", "status"], name="campaign_program_status")]

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
        errors = {}
        if self.ends_at and self.starts_at and self.ends_at <= self.starts_at:
            errors["ends_at"] = _("The end must be after the start.")
        if self.effect_value is not None:
            if self.effect_value <= 0:
                errors["effect_value"] = _("The value must be positive.")
            elif self.effect == self.Effect.FIXED and self.effect_value != int(self.effect_value):
                errors["effect_value"] = _("A fixed bonus is a whole number of points.")
            elif self.effect == self.Effect.MULTIPLIER and self.effect_value <= 1:
                errors["effect_value"] = _("A multiplier must be above 1 (2 = double points).")
        if self.trigger != self.Trigger.PURCHASE and self.effect != self.Effect.FIXED:
            errors["effect"] = _("A lifecycle bonus is a fixed number of points.")
        if self.trigger == self.Trigger.REACTIVATION and not self.inactive_months:
            errors["inactive_months"] = _("Say after how many months without activity.")
        if (self.hour_from is None) != (self.hour_until is None):
            errors["hour_until"] = _("Give both hours, or neither.")
        elif self.hour_from is not None and self.hour_from == self.hour_until % 24:
            errors["hour_until"] = _("The hours must differ.")
        if self.hour_from is not None and self.hour_from > 23:
            errors["hour_from"] = _("An hour between 0 and 23.")
        if self.hour_until is not None and not 1 <= self.hour_until <= 24:
            errors["hour_until"] = _("An hour between 1 and 24.")
        if (
            self.enrolled_since
            and self.enrolled_before
            and self.enrolled_before <= self.enrolled_since
        ):
            errors["enrolled_before"] = _("Must be after 'enrolled on or after'.")
        if self.holdout_percent is not None and not 0 <= self.holdout_percent < 100:
            errors["holdout_percent"] = _("A percentage from 0 to less than 100.")
        if self.budget_period and not (self.period_budget_points or self.period_budget_amount):
            errors["period_budget_points"] = _("Give the cap per period in points or money.")
        if not self.budget_period and (self.period_budget_points or self.period_budget_amount):
            errors["budget_period"] = _("Choose the period of the cap.")
        channels = {c for c, _label in Store.Channel.choices}
        if any(c not in channels for c in self.channels or []):
            errors["channels"] = _("Unknown channel.")
        if any(d not in range(7) for d in self.weekdays or []):
            errors["weekdays"] = _("Days of the week are 0 (Monday) to 6 (Sunday).")
        if self.segment_id and self.program_id and self.segment.program_id != self.program_id:
            errors["segment"] = _("This segment belongs to another program.")
        if errors:
            raise ValidationError(errors)

    @property
    def target_category_list(self) -> list[str]:
        return _comma_list(self.target_categories)

    @property
    def target_sku_list(self) -> list[str]:
        return _comma_list(self.target_skus)

    @property
    def basket_category_list(self) -> list[str]:
        return _comma_list(self.basket_categories)

    @property
    def basket_sku_list(self) -> list[str]:
        return _comma_list(self.basket_skus)

    def budget_caps(self, point_cost: Decimal) -> tuple[int | None, int | None]:
        """(overall cap, cap per period) in points; a money cap counts as points x the cost of
        one point (rounded down), and the lower of the two caps wins. None: no cap."""
        return (
            points_cap(self.budget_points, self.budget_amount, point_cost),
            points_cap(self.period_budget_points, self.period_budget_amount, point_cost)
            if self.budget_period
            else None,
        )


def points_cap(points: int | None, amount: Decimal | None, point_cost: Decimal) -> int | None:
    """A cap in points from a cap in points and/or money (the lower wins); None: no cap."""
    caps = [points] if points is not None else []
    if amount is not None and point_cost > 0:
        caps.append(int(amount / point_cost))
    return min(caps) if caps else None


class CampaignBudgetUsage(models.Model):
    """Points a campaign has given within one budget scope (overall or one period, optionally
    per store). Consumed race-safe by a conditional upsert (members/campaigns/budgets.py)."""

    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, related_name="budget_usage", verbose_name=_("campaign")
    )
    scope = models.CharField(_("scope"), max_length=40)
    spent_points = models.IntegerField(_("points given"), default=0)
    cap_points = models.IntegerField(_("cap (points)"))

    class Meta:
        verbose_name = _("campaign budget use")
        verbose_name_plural = _("campaign budget use")
        ordering = ["campaign", "scope"]
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "scope"], name="campaign_budget_scope_unique"
            ),
            models.CheckConstraint(
                condition=Q(spent_points__gte=0), name="campaign_budget_spent_not_negative"
            ),
        ]

    def __str__(self):
        return f"{self.scope}: {self.spent_points}/{self.cap_points}"
