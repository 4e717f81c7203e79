"""Forms of the staff dashboards: the filters of the overview (and of its CSV exports), and the
full recompute started from the admin."""

from datetime import date
from urllib.parse import urlencode

from django import forms
from django.utils.translation import gettext_lazy as _

from loyalty.models import Program

from . import selectors
from .models import PeriodKind
from .templatetags.kpi_format import period_label, scope_label


class DashboardFilterForm(forms.Form):
    """Program, period kind, period and scope (whole program, a store or a channel). The
    choices of period and scope depend on the program: `clean` checks them against its
    snapshots and stores."""

    program = forms.ChoiceField(label=_("Program"))
    kind = forms.ChoiceField(label=_("Period kind"), choices=PeriodKind.choices, required=False)
    # Free text checked in clean() against the program's snapshots and stores; the widgets
    # list them.
    period = forms.CharField(label=_("Period"), required=False, widget=forms.Select)
    scope = forms.CharField(label=_("Store or channel"), required=False, widget=forms.Select)

    def __init__(self, data, *, programs: list[Program]):
        data = data.copy()
        if programs and not data.get("program"):
            data["program"] = programs[0].slug
        if not data.get("kind"):
            data["kind"] = PeriodKind.MONTH
        super().__init__(data)
        self.programs = {p.slug: p for p in programs}
        self.fields["program"].choices = [(p.slug, p.name) for p in programs]
        self.periods: list = []
        self.scopes: list[selectors.Scope] = []
        self.fields["period"].widget.choices = [("", _("Latest"))]
        self.fields["scope"].widget.choices = [("", _("Whole program"))]

    def clean(self):
        cleaned = super().clean()
        program = self.programs.get(cleaned.get("program"))
        kind = cleaned.get("kind") or PeriodKind.MONTH
        cleaned["kind"] = kind
        if program is None:
            return cleaned
        cleaned["program"] = program
        self.periods = selectors.snapshot_periods(program, kind)
        self.scopes = selectors.program_scopes(program)
        self.fields["period"].widget.choices = [("", _("Latest"))] + [
            (p.start.isoformat(), period_label(p)) for p in self.periods
        ]
        self.fields["scope"].widget.choices = [(s.value, scope_label(s)) for s in self.scopes]
        cleaned["period"] = self._clean_period(cleaned.get("period") or "")
        cleaned["scope"] = self._clean_scope(cleaned.get("scope") or "")
        return cleaned

    def _clean_period(self, raw: str):
        if not raw:
            return self.periods[0] if self.periods else None
        try:
            start = date.fromisoformat(raw)
        except ValueError:
            self.add_error("period", _("Enter a date as YYYY-MM-DD."))
            return None
        for period in self.periods:
            if period.start == start:
                return period
        self.add_error("period", _("There is no snapshot of this period: choose one listed."))
        return None

    def _clean_scope(self, raw: str):
        for scope in self.scopes:
            if scope.value == raw:
                return scope
        self.add_error("scope", _("This store or channel is not one of the program's."))
        return None

    def query(self) -> str:
        """The filters as a query string (for the export links)."""
        params = {
            "program": self.cleaned_data["program"].slug,
            "kind": self.cleaned_data["kind"],
            "period": self.cleaned_data["period"].start.isoformat()
            if self.cleaned_data.get("period")
            else "",
            "scope": self.cleaned_data["scope"].value if self.cleaned_data.get("scope") else "",
        }
        return urlencode({k: v for k, v in params.items() if v})


class RecomputeForm(forms.Form):
    """A full recompute of the snapshots of the programs and period kinds chosen."""

    programs = forms.ModelMultipleChoiceField(
        label=_("Programs"),
        queryset=Program.objects.order_by("name"),
        widget=forms.CheckboxSelectMultiple,
    )
    period_kinds = forms.MultipleChoiceField(
        label=_("Period kinds"),
        choices=PeriodKind.choices,
        initial=PeriodKind.values,
        widget=forms.CheckboxSelectMultiple,
    )
    full = forms.BooleanField(
        label=_("Full recompute"),
        required=False,
        initial=True,
        help_text=_(
            "Every period since the program's first activity. Unticked: only the periods "
            "changed since the last run (what the nightly job does)."
        ),
    )
