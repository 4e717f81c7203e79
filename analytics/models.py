"""KPI snapshots: what the nightly recompute writes and the dashboards read (docs/kpis.md).

The tables are the contract with the dashboards: one row per figure, keyed by program, period
kind, period start (a local date in the program's time zone), dimension and metric, holding the
value and the inputs it was computed from, so that every figure can be shown with its formula.
Rows are upserted on that key: recomputing a period rewrites the same rows with the same values.
"""

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from loyalty.models import JobRun, Program, Store


class PeriodKind(models.TextChoices):
    MONTH = "month", _("Month")
    WEEK = "week", _("Week")
    QUARTER = "quarter", _("Quarter")


class Dimension(models.TextChoices):
    PROGRAM = "program", _("Whole program")
    STORE = "store", _("Store")
    CHANNEL = "channel", _("Channel")
    TIER = "tier", _("Tier")


class Metric(models.TextChoices):
    """Every figure the recompute stores. Definitions: analytics/kpis/ and docs/kpis.md."""

    MEMBERS_TOTAL = "members_total", _("Members enrolled by the end of the period")
    NEW_MEMBERS = "new_members", _("New members")
    ACTIVE_MEMBERS = "active_members", _("Active members")
    RETENTION_RATE = "retention_rate", _("Retention rate (%)")
    ATTRITION_RATE = "attrition_rate", _("Attrition rate (%)")
    REPURCHASE_RATE = "repurchase_rate", _("Repurchase rate (%)")
    PURCHASES_MEMBER = "purchases_member", _("Member purchases")
    PURCHASES_NON_MEMBER = "purchases_non_member", _("Non-member purchases")
    REVENUE_TOTAL = "revenue_total", _("Revenue")
    REVENUE_MEMBER = "revenue_member", _("Member revenue")
    REVENUE_NON_MEMBER = "revenue_non_member", _("Non-member revenue")
    AVG_BASKET_MEMBER = "avg_basket_member", _("Average member basket")
    AVG_BASKET_NON_MEMBER = "avg_basket_non_member", _("Average non-member basket")
    PURCHASE_FREQUENCY = "purchase_frequency", _("Purchase frequency")
    MEMBER_REVENUE_POP = "member_revenue_pop", _("Member revenue, change on previous period (%)")
    MEMBER_REVENUE_YOY = "member_revenue_yoy", _("Member revenue, change on a year before (%)")
    MEMBER_REVENUE_SHARE = "member_revenue_share", _("Members' share of revenue (%)")
    SPEND_PER_MEMBER = "spend_per_member", _("Spend per active member")
    SPEND_MULTIPLE = "spend_multiple", _("Spend multiple (members vs non-member baseline)")
    POINTS_ISSUED = "points_issued", _("Points issued")
    POINTS_REDEEMED = "points_redeemed", _("Points redeemed")
    POINTS_EXPIRED = "points_expired", _("Points expired")
    POINTS_ADJUSTED = "points_adjusted", _("Points adjusted by staff")
    REDEMPTION_RATE = "redemption_rate", _("Redemption rate (%)")
    BREAKAGE_RATE = "breakage_rate", _("Breakage (%)")
    LIABILITY_POINTS = "liability_points", _("Outstanding points")
    LIABILITY_AMOUNT = "liability_amount", _("Points liability")
    REWARD_COST = "reward_cost", _("Reward costs")
    PROGRAM_COST = "program_cost", _("Program cost")
    INCREMENTAL_REVENUE = "incremental_revenue", _("Incremental revenue")
    INCREMENTAL_GROSS_MARGIN = "incremental_gross_margin", _("Incremental gross margin")
    ROI = "roi", _("ROI (%)")
    TIER_MEMBERS = "tier_members", _("Members in the tier")


# What identifies a figure and a cohort cell: the unique constraints, and the keys the
# recompute upserts on (analytics/services.py), so re-running replaces rather than adds.
FIGURE_KEY = ["program", "period_kind", "period_start", "dimension", "dimension_key", "metric"]
CELL_KEY = ["program", "cohort_month", "months_after"]


class KpiValue(models.Model):
    """One figure of one period: value, and the numerator and denominator (or the raw figures
    in `inputs`) it was computed from. `value` is empty when the formula divides by zero."""

    program = models.ForeignKey(
        Program,
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("program"),
        db_index=False,  # covered by the unique constraint
    )
    period_kind = models.CharField(_("period kind"), max_length=8, choices=PeriodKind.choices)
    period_start = models.DateField(_("period start"), help_text=_("Local date, first day."))
    period_end = models.DateField(_("period end"), help_text=_("Local date, first day after."))
    dimension = models.CharField(_("dimension"), max_length=8, choices=Dimension.choices)
    # Empty for the whole program; the store id, the channel code or the tier id (empty: no
    # tier) otherwise.
    dimension_key = models.CharField(_("dimension key"), max_length=20, blank=True)
    store = models.ForeignKey(
        Store,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("store"),
        db_index=False,
    )
    metric = models.CharField(_("metric"), max_length=32, choices=Metric.choices)
    value = models.DecimalField(_("value"), max_digits=20, decimal_places=4, null=True)
    numerator = models.DecimalField(_("numerator"), max_digits=20, decimal_places=4, null=True)
    denominator = models.DecimalField(_("denominator"), max_digits=20, decimal_places=4, null=True)
    inputs = models.JSONField(_("inputs"), default=dict, blank=True)

    class Meta:
        verbose_name = _("KPI value")
        verbose_name_plural = _("KPI values")
        ordering = ["program", "period_kind", "period_start", "dimension", "dimension_key"]
        constraints = [
            models.UniqueConstraint(fields=FIGURE_KEY, name="kpivalue_unique_figure"),
            models.CheckConstraint(
                condition=Q(dimension="program", dimension_key="") | ~Q(dimension="program"),
                name="kpivalue_program_has_no_key",
            ),
        ]
        indexes = [
            # A trend: one metric of one dimension over the periods.
            models.Index(
                fields=["program", "period_kind", "metric", "dimension", "period_start"],
                name="kpivalue_trend",
            ),
        ]

    def __str__(self):
        return f"{self.metric} {self.period_kind} {self.period_start}: {self.value}"


class KpiCohort(models.Model):
    """Cohort retention: of the members enrolled in a local calendar month, how many were
    active (bought at least once) in the month `months_after` months later (0: that month)."""

    program = models.ForeignKey(
        Program,
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("program"),
        db_index=False,  # covered by the unique constraint
    )
    cohort_month = models.DateField(_("enrolment month"), help_text=_("First day, local."))
    months_after = models.PositiveSmallIntegerField(_("months after enrolment"))
    members = models.PositiveIntegerField(_("members in the cohort"))
    active = models.PositiveIntegerField(_("active members"))
    rate = models.DecimalField(_("retention (%)"), max_digits=7, decimal_places=2, null=True)

    class Meta:
        verbose_name = _("cohort retention")
        verbose_name_plural = _("cohort retention")
        ordering = ["program", "cohort_month", "months_after"]
        constraints = [
            models.UniqueConstraint(fields=CELL_KEY, name="kpicohort_unique_cell"),
        ]

    def __str__(self):
        return f"{self.cohort_month:%Y-%m} +{self.months_after}: {self.rate}"


class KpiLiabilityByExpiry(models.Model):
    """The points outstanding at the end of a period, by the local month they expire in (empty:
    they never expire), with the breakage expected from the program's history. The rows of a
    period are replaced as a whole by each recompute."""

    program = models.ForeignKey(
        Program,
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("program"),
        db_index=False,  # covered by the index below
    )
    period_kind = models.CharField(_("period kind"), max_length=8, choices=PeriodKind.choices)
    period_start = models.DateField(_("period start"))
    expiry_month = models.DateField(_("expiry month"), null=True, blank=True)
    points = models.BigIntegerField(_("outstanding points"))
    amount = models.DecimalField(_("liability"), max_digits=16, decimal_places=2)
    expected_breakage_points = models.BigIntegerField(_("expected breakage (points)"))
    expected_breakage_amount = models.DecimalField(
        _("expected breakage"), max_digits=16, decimal_places=2
    )

    class Meta:
        verbose_name = _("liability by expiry month")
        verbose_name_plural = _("liability by expiry month")
        ordering = ["program", "period_kind", "period_start", "expiry_month"]
        indexes = [
            models.Index(
                fields=["program", "period_kind", "period_start"], name="kpiliability_period"
            ),
        ]

    def __str__(self):
        return f"{self.period_start} -> {self.expiry_month or '-'}: {self.points}"


class KpiRefresh(models.Model):
    """Where the snapshots of a program and period kind stand: the incremental recompute looks
    at what was recorded since `recorded_through`, and at a change of `fingerprint` (costs,
    margin, point cost, time zone, expiry) that calls for a full recompute."""

    program = models.ForeignKey(
        Program, on_delete=models.CASCADE, related_name="+", verbose_name=_("program")
    )
    period_kind = models.CharField(_("period kind"), max_length=8, choices=PeriodKind.choices)
    recorded_through = models.DateTimeField(_("covers what was recorded before"))
    fingerprint = models.CharField(_("settings fingerprint"), max_length=64)
    last_run = models.ForeignKey(
        JobRun,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("last run"),
    )

    class Meta:
        verbose_name = _("KPI refresh state")
        verbose_name_plural = _("KPI refresh states")
        constraints = [
            models.UniqueConstraint(
                fields=["program", "period_kind"], name="kpirefresh_unique_per_kind"
            ),
        ]

    def __str__(self):
        return f"{self.program} {self.period_kind}: {self.recorded_through:%Y-%m-%d %H:%M}"


class KpiTarget(models.Model):
    """A target staff set for one KPI of a program; the dashboard shows on or off target."""

    class Direction(models.TextChoices):
        HIGHER = "higher", _("Higher is better")
        LOWER = "lower", _("Lower is better")

    program = models.ForeignKey(
        Program, on_delete=models.CASCADE, related_name="kpi_targets", verbose_name=_("program")
    )
    metric = models.CharField(_("KPI"), max_length=32, choices=Metric.choices)
    target_value = models.DecimalField(_("target"), max_digits=20, decimal_places=4)
    direction = models.CharField(
        _("direction"), max_length=6, choices=Direction.choices, default=Direction.HIGHER
    )

    class Meta:
        verbose_name = _("KPI target")
        verbose_name_plural = _("KPI targets")
        ordering = ["program", "metric"]
        constraints = [
            models.UniqueConstraint(fields=["program", "metric"], name="kpitarget_unique"),
        ]

    def __str__(self):
        return f"{self.get_metric_display()}: {self.target_value}"

    def is_met(self, value) -> bool | None:
        """Whether `value` reaches the target (None when there is no value)."""
        if value is None:
            return None
        if self.direction == self.Direction.HIGHER:
            return value >= self.target_value
        return value <= self.target_value

    def gap(self, value):
        """value - target (None when there is no value)."""
        return None if value is None else value - self.target_value
