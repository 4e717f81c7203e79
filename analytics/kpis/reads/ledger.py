"""Ledger: the sums of points by period and kind (issued, redeemed, expired, adjusted; and,
added up from the beginning, the points to date), and the credits by month that the liability
after earning takes from the same rows."""

from collections import defaultdict
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import date

from django.db.models import Count, F, Q, Sum

from loyalty.models import Program
from members.models import PointsEntry

from ..postgres import hashed_periods
from .common import day_of, period_annotation


@dataclass
class LedgerSums:
    """The ledger's sums by period and kind (`ledger_sums`), with what the month-end
    liability after earning takes from the same rows: every member's credits by month, and
    whether a credit is dated apart from when it took effect (`earned_at` is only set on
    releases, which are not credits; otherwise the grouped liability does not hold)."""

    by_kind: dict[date, dict[str, int]]
    credits: dict[date, int] = field(default_factory=dict)
    misdated: bool = False


def ledger_sums(
    program: Program, kind: str, hi, *, credits: bool = False, since=None
) -> LedgerSums:
    """Ledger sums by period and kind, from the beginning to `hi`; with `credits` (month
    periods, expiry after earning), the credits by month too, which spares the liability a
    scan of its own of the ledger. `since` as for
    `tier_deltas`: the periods found by their bounds, the sums hashed."""
    aggregates = {"total": Sum("points")}
    if credits:
        credit = Q(points__gt=0) & ~Q(kind=PointsEntry.Kind.RELEASE)
        aggregates["credits"] = Sum("points", filter=credit)
        aggregates["misdated"] = Count(
            "pk",
            filter=~Q(kind=PointsEntry.Kind.RELEASE)
            & (Q(earned_at__lt=F("effective_at")) | Q(earned_at__gt=F("effective_at"))),
        )
    span = None if since is None else (since, hi)
    rows = (
        PointsEntry.objects.filter(program=program, effective_at__lt=hi)
        .annotate(period=period_annotation(PointsEntry, "effective_at", kind, program, span))
        .values("period", "kind")
        .annotate(**aggregates)
        .order_by()
    )
    with hashed_periods() if span is not None else nullcontext():
        rows = list(rows)
    sums = LedgerSums(defaultdict(dict))
    for row in sorted(rows, key=lambda row: (day_of(row["period"]), row["kind"])):
        sums.by_kind[row["period"]][row["kind"]] = int(row["total"] or 0)
        if credits and row["credits"]:
            sums.credits[row["period"]] = sums.credits.get(row["period"], 0) + row["credits"]
        if credits and row["misdated"]:
            sums.misdated = True
    return sums
