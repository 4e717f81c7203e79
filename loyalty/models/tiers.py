"""Tiers: the levels a member qualifies for and keeps."""

from decimal import Decimal

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from .program import Program, _touch_program


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
