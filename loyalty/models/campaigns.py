"""Segments, campaigns and their budget usage."""

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from .program import Program, Store, _touch_program
from .tiers import Tier


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
