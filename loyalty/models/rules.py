"""Earning rules: rates, multipliers, exclusions and minimum baskets."""

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from .program import Program, Store, _touch_program


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
