"""Sales: the purchase sums of each store by period (purchases and net revenue, members' and
anonymous). The program's and each channel's sums are added up from the stores' (every counted
purchase has a store); active members come from the member activity (`activity.py`)."""

from collections import defaultdict
from datetime import date

from django.db.models import Count, F, Q, Sum

from loyalty.models import Program
from members.models import Purchase

from ..postgres import hashed_periods, index_scans
from .common import NET_AMOUNT, Spans, day_of, period_annotation

# The purchases that count: not returned in full (a purchase returned in full is not a
# purchase, and makes nobody active), for their amount net of what was returned.
COUNTED = Q(total_amount__gt=F("returned_amount"))

# The purchase sums of a group of counted purchases; its active members are counted apart
# (the member activity), a member active in two stores being one.
# (A count of `occurred_at`, never null, not of the id: the id is in no index, where the
# other columns are in the covering ones.)
_PURCHASE_SUMS = {
    "member_purchases": Count("occurred_at", filter=Q(member__isnull=False)),
    "member_revenue": Sum(NET_AMOUNT, filter=Q(member__isnull=False)),
    "anon_purchases": Count("occurred_at", filter=Q(member__isnull=True)),
    "anon_revenue": Sum(NET_AMOUNT, filter=Q(member__isnull=True)),
}


def store_sums(program: Program, kind: str, spans: Spans) -> dict[date, list[dict]]:
    """The purchase sums of each store by `kind` period (or day) over `spans`, by period
    start, each period's rows in store id order. Their active members come from the member
    activity (a distinct count here would sort every purchase again, in one process)."""
    rows = []
    # One query per span: bounded by it, each reads its range of the index.
    for lo, hi in spans:
        counted = (
            Purchase.objects.filter(
                COUNTED, program=program, occurred_at__gte=lo, occurred_at__lt=hi
            )
            .annotate(period=period_annotation(Purchase, "occurred_at", kind, program, (lo, hi)))
            .values("period", "store_id")
            .annotate(**_PURCHASE_SUMS)
            .order_by()
        )
        # An index-only scan of a covering index reads a sixth of the table's pages.
        with index_scans(), hashed_periods():
            rows += list(counted)
    by_store: dict[date, list[dict]] = defaultdict(list)
    for row in sorted(rows, key=lambda row: (day_of(row["period"]), row["store_id"])):
        by_store[day_of(row.pop("period"))].append(row)
    return by_store
