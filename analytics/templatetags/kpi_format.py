# The figures shown to staff use typographic signs (times, minus, dashes).
# ruff: noqa: RUF001
"""How the staff dashboard shows the figures that analytics.selectors returns: numbers in the
active language's format with their unit, changes, period names and the shade of a cohort
cell. The views and the templates ({% load kpi_format %}) both use them."""

from datetime import date
from decimal import Decimal

from django import template
from django.utils.formats import date_format, number_format
from django.utils.translation import gettext

from analytics.models import Dimension, PeriodKind
from analytics.periods import Period

register = template.Library()

PERCENT, MONEY, RATIO, MULTIPLE, COUNT = "percent", "money", "ratio", "multiple", "count"
TEXT = "text"
MISSING = "–"


def plain(value) -> str:
    """A raw figure as stored, without trailing zeros of the 4-decimal columns."""
    if value is None:
        return MISSING
    if isinstance(value, Decimal):
        value = value.normalize() if value == value.to_integral() else value
        text = format(value, "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    return str(value)


def show(value, display_kind: str, currency: str = "") -> str:
    """A figure as the page shows it, in the active language's number format."""
    if value is None:
        return MISSING
    if display_kind == COUNT:
        return number_format(value, 0, force_grouping=True)
    text = number_format(value, 2, force_grouping=True)
    if display_kind == MONEY:
        return f"{text} {currency}".strip()
    if display_kind == PERCENT:
        return f"{text} %"
    if display_kind == MULTIPLE:
        return f"{text}×"
    return text


def show_change(delta, display_kind: str) -> str:
    """A change (analytics.selectors.change) signed, in points for a percentage, else in %."""
    if delta is None:
        return MISSING
    sign = "+" if delta > 0 else ""
    if display_kind == PERCENT:
        return gettext("%(change)s pts") % {"change": sign + number_format(delta, 2)}
    return f"{sign}{number_format(delta, 1)} %"


def show_text(value) -> str:
    """A text cell of a table: dates in ISO form, a missing value as a dash."""
    if value is None:
        return MISSING
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def period_label(period: Period) -> str:
    """'November 2026', 'Q4 2026', 'Week of 16 Nov. 2026', in the active language."""
    if period.kind == PeriodKind.MONTH:
        return date_format(period.start, "F Y")
    if period.kind == PeriodKind.QUARTER:
        return gettext("Q%(quarter)d %(year)d") % {
            "quarter": (period.start.month - 1) // 3 + 1,
            "year": period.start.year,
        }
    return gettext("Week of %(day)s") % {"day": date_format(period.start, "j M Y")}


@register.filter
def scope_label(scope) -> str:
    """'Whole program', a store's name or 'Channel: Shop' (an analytics.selectors.Scope)."""
    if scope.is_program:
        return gettext("Whole program")
    if scope.dimension == Dimension.CHANNEL:
        return gettext("Channel: %(channel)s") % {"channel": scope.name}
    return scope.name


@register.filter
def heat_class(rate: Decimal | None) -> str:
    """The CSS class of a cohort cell's shade: heat-0 (0-9 %) to heat-10 (100 %)."""
    if rate is None:
        return "heat-none"
    return f"heat-{min(int(rate // 10), 10)}"
