"""Program costs, one-off and recurring."""

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from .program import Program


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
