"""The one engine of the KPIs: the grouped reads (`reads`) of a set of periods, run together
(`postgres.run_reads`), their rows turned into the facts of each period (`PeriodFacts`), and
the figures assembled from them (`definitions.assemble`). A full recompute and the nightly
incremental pass differ only in the periods they ask for."""

from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from datetime import date
from functools import partial

from loyalty.models import Program, Store

from ..models import PeriodKind
from ..periods import Period, period_containing, periods_between, utc_midnight
from .definitions import (
    HUNDRED,
    CohortCell,
    PeriodFacts,
    PeriodResult,
    add_totals,
    assemble,
    channel_rows,
    divide,
    money,
    month_index,
)
from .postgres import grouped_read_settings, run_reads
from .reads.activity import count_masked, member_activity, store_masks
from .reads.common import DAY, Spans, day_of, merge_spans, period_spans
from .reads.costs import cost_parts
from .reads.ledger import LedgerSums, ledger_sums
from .reads.liability import (
    consumer_changes,
    grouped_outstanding,
    misdated_outstanding_at,
    outstanding_from_changes,
)
from .reads.members import enrolments, tier_deltas
from .reads.sales import store_sums


def grouped_facts(
    program: Program, periods: list[Period], *, first_day: date, costs: list
) -> dict[Period, PeriodFacts]:
    """The facts of `periods` (one kind, in order): `grouped_facts_of_kinds` for one kind."""
    kind = periods[0].kind
    return grouped_facts_of_kinds(program, {kind: periods}, first_day=first_day, costs=costs)[kind]


# The grouped reads' relative cost (CPU-seconds of each read alone on a large program,
# bench/analytics.py): the heaviest start first, so that the two connections end together.
# Not listed: the light ones.
READ_WEIGHTS: dict[object, float] = {
    ("activity", PeriodKind.MONTH): 8,
    ("activity", PeriodKind.WEEK): 7,
    "stores": 5.5,
    ("activity", PeriodKind.QUARTER): 4.5,
    "outstanding": 3.3,
    "ledger": 2.2,
}


def grouped_facts_of_kinds(
    program: Program, plans: Mapping[str, list[Period]], *, first_day: date, costs: list
) -> dict[str, dict[Period, PeriodFacts]]:
    """The facts of the periods of each kind of `plans` (kind: its periods, in order, any of
    them: every period of a full recompute, or the few that changed since the last run), by
    kind, from one grouped query per family of figures, grouped by the local period start
    computed in SQL: sales per store, member activity (active, repeat buyers, retention,
    cohorts), enrolments, ledger sums by kind, members per tier, the month-end liability and
    the costs. Python then only adds up the few rows per period.

    Each read covers what the periods need, and no more: the sales of each period, of the one
    before and of the one a year before; the member activity of each period and of the one
    before; the costs of each period; the liability at each month's end; and from the
    beginning, what is counted to date (members, points, tiers). Periods apart from each
    other make spans apart, each read by a query of its own, bounded by it.

    With several kinds, the reads whose rows add up (sales per store, ledger sums, members
    per tier, enrolments) group by local day once, and each kind adds up the days of its
    periods (`_roll_up`): one scan each instead of one per kind. The member activity (distinct
    members, previous active period) and the costs (rounded per period) are read per kind.
    The reads are independent of each other: on PostgreSQL they run on
    `settings.KPI_READ_CONNECTIONS` connections at once (`run_reads`)."""
    tz = program.tzinfo
    # Nothing was recorded before the program's first active day.
    since = utc_midnight(first_day, tz)
    sales_spans = {
        kind: data_spans([q for p in periods for q in (p, p.shift(-1), p.year_before())], tz, since)
        for kind, periods in plans.items()
    }
    unit = next(iter(plans)) if len(plans) == 1 else DAY
    stores_spans = merge_spans(span for spans in sales_spans.values() for span in spans)
    hi = stores_spans[-1][1]
    channel_of = dict(Store.objects.filter(program=program).values_list("pk", "channel"))
    masks = store_masks(channel_of)
    months = plans.get(PeriodKind.MONTH)
    # The liability at every month's end; after earning, the consumers' changes here and
    # every member's credits from the ledger sums (`outstanding_from_changes`).
    by_earning = bool(months) and program.expiry_policy == Program.ExpiryPolicy.AFTER_EARNING
    reads: dict[object, Callable[[], object]] = {
        ("activity", kind): partial(
            member_activity,
            program,
            kind,
            data_spans([q for p in periods for q in (p, p.shift(-1))], tz, since),
            masks,
        )
        for kind, periods in plans.items()
    }
    if by_earning:
        reads["outstanding"] = partial(consumer_changes, program, months)
    elif months:
        reads["outstanding"] = partial(grouped_outstanding, program, months)
    reads["stores"] = partial(store_sums, program, unit, stores_spans)
    reads["ledger"] = partial(ledger_sums, program, unit, hi, credits=by_earning, since=since)
    for kind, periods in plans.items():
        reads[("costs", kind)] = partial(cost_parts, program, periods, costs)
    reads["tiers"] = partial(tier_deltas, program, unit, since, hi)
    reads["enrolments"] = partial(enrolments, program, unit, since, hi)
    # Heaviest first: each connection takes the next read when it is free, and the last ones
    # to start are short.
    order = sorted(reads, key=lambda name: -READ_WEIGHTS.get(name, 0))
    read = run_reads({name: reads[name] for name in order}, grouped_read_settings())

    result = {}
    for kind, periods in plans.items():
        first, last = periods[0].year_before(), periods[-1]
        ledger = read["ledger"]
        kind_read = {
            "activity": read[("activity", kind)],
            "costs": read[("costs", kind)],
            "outstanding": read["outstanding"] if kind == PeriodKind.MONTH else {},
            "stores": read["stores"],
            "ledger": ledger,
            "tiers": read["tiers"],
            "enrolments": read["enrolments"],
        }
        if unit != kind:
            roll = partial(_roll_up, kind, last)
            kind_read["stores"] = _roll_up_stores(kind, first, last, read["stores"])
            kind_read["ledger"] = LedgerSums(
                by_kind=roll(ledger.by_kind),
                credits=roll(ledger.credits) if kind == PeriodKind.MONTH else {},
                misdated=ledger.misdated,
            )
            kind_read["tiers"] = [
                (period.start, tier_id, delta)
                for day, tier_id, delta in read["tiers"]
                if (period := _within(kind, day_of(day), last))
            ]
            kind_read["enrolments"] = roll(read["enrolments"])
        result[kind] = _grouped_result(program, periods, first_day, kind_read, masks, channel_of)
    return result


def data_spans(periods, tz, since) -> Spans:
    """The UTC spans of `periods` (merged, `period_spans`) from `since` on."""
    return [(max(lo, since), hi) for lo, hi in period_spans(periods, tz) if hi > since]


def _within(kind: str, day: date, last: Period, first: Period | None = None):
    """The `kind` period of `day` when it lies from `first` (or from the beginning) to
    `last`, else None."""
    period = period_containing(kind, day)
    if period > last or (first is not None and period < first):
        return None
    return period


def _roll_up(kind: str, last: Period, by_day: Mapping) -> dict:
    """Day rows (day: an int, or a dict of ints by key) added up by `kind` period, for the
    periods from the beginning to `last` (what running sums to date need)."""
    result: dict = {}
    for day, value in by_day.items():
        period = _within(kind, day_of(day), last)
        if period is None:
            continue
        if isinstance(value, dict):
            sums = result.setdefault(period.start, {})
            for key, n in value.items():
                sums[key] = sums.get(key, 0) + n
        else:
            result[period.start] = result.get(period.start, 0) + value
    return {start: result[start] for start in sorted(result)}


def _roll_up_stores(kind: str, first: Period, last: Period, by_day: Mapping) -> dict:
    """The stores' purchase sums by day (`store_sums`) added up by `kind` period from `first`
    to `last`, each period's rows by store id as the query gives them."""
    sums: dict[date, dict[int, dict]] = defaultdict(dict)
    for day, rows in by_day.items():
        period = _within(kind, day_of(day), last, first)
        if period is None:
            continue
        stores = sums[period.start]
        for row in rows:
            total = stores.get(row["store_id"])
            if total is None:
                stores[row["store_id"]] = dict(row)
                continue
            for key in ("member_purchases", "anon_purchases"):
                total[key] += row[key]
            for key in ("member_revenue", "anon_revenue"):
                if row[key] is not None:
                    total[key] = row[key] + (total[key] or 0)
    return {start: [stores[k] for k in sorted(stores)] for start, stores in sorted(sums.items())}


def _grouped_result(program, periods, first_day, read, masks, channel_of):
    """The PeriodFacts of each period from the grouped reads (`read`, by name)."""
    kind = periods[0].kind
    by_store = read["stores"]
    enrolments, ledger_sums, parts = read["enrolments"], read["ledger"], read["costs"]
    ledger = ledger_sums.by_kind

    # Member activity: active, repeat buyers, retained (previous active period is P-1),
    # cohort cells (month periods), active members per store and per channel.
    active: dict[date, int] = defaultdict(int)
    repeaters: dict[date, int] = defaultdict(int)
    pairs: dict[tuple, int] = defaultdict(int)
    cohort_active: dict[tuple, int] = defaultdict(int)
    store_active: dict[date, dict] = defaultdict(lambda: defaultdict(int))
    channel_active: dict[date, dict] = defaultdict(lambda: defaultdict(int))
    for row_kind, start, prev, cohort, n, repeat, *bits in read["activity"]:
        start, n = day_of(start), int(n)
        if row_kind == "stores":
            count_masked(store_active[start], channel_active[start], masks, bits, channel_of, n)
            continue
        active[start] += n
        repeaters[start] += int(repeat or 0)
        if prev is not None:
            pairs[(start, day_of(prev))] += n
        if cohort is not None and day_of(cohort) <= start:
            cohort_active[(day_of(cohort), start)] += n
    by_channel: dict[date, list[dict]] = {}
    for start, stores in by_store.items():
        for row in stores:
            row["active"] = store_active[start].get(row["store_id"], 0)
        by_channel[start] = channel_rows(stores, channel_of, channel_active[start])

    tier_deltas: dict[date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for start, tier_id, delta in read["tiers"]:
        tier_deltas[day_of(start)]["" if tier_id is None else str(tier_id)] += int(delta)

    # Running sums over every period start up to each period of the plan.
    starts = sorted(set(enrolments) | set(ledger) | set(tier_deltas) | {p.start for p in periods})
    members_to: dict[date, int] = {}
    points_before_of: dict[date, dict[str, int]] = {}
    tiers_to: dict[date, dict[str, int]] = {}
    members_total, points_to, tiers = 0, defaultdict(int), defaultdict(int)
    for start in starts:
        points_before_of[start] = dict(sorted(points_to.items()))
        members_total += enrolments.get(start, 0)
        members_to[start] = members_total
        for key, points in ledger.get(start, {}).items():
            points_to[key] += points
        for key, delta in tier_deltas.get(start, {}).items():
            tiers[key] += delta
        tiers_to[start] = {key: n for key, n in sorted(tiers.items()) if n}

    outstanding: dict[date, dict[date | None, int]] = read["outstanding"]
    if kind == PeriodKind.MONTH:
        if program.expiry_policy == Program.ExpiryPolicy.AFTER_EARNING and not ledger_sums.misdated:
            outstanding = outstanding_from_changes(periods, outstanding, ledger_sums.credits)
        elif program.expiry_policy == Program.ExpiryPolicy.AFTER_EARNING:
            # Without the grouped form (see LedgerSums.misdated): one query per month.
            outstanding = run_reads(
                {p.start: partial(misdated_outstanding_at, program, p, first_day) for p in periods},
                grouped_read_settings(),
            )

    result = {}
    for period in periods:
        start, previous = period.start, period.shift(-1).start
        stores = by_store.get(start, [])
        previous_totals = add_totals(by_store.get(previous, []), active.get(previous, 0))
        cohorts = []
        if kind == PeriodKind.MONTH:
            for month in [p.start for p in periods_between(kind, first_day, start)]:
                size = enrolments.get(month, 0)
                if size:
                    n = cohort_active.get((month, start), 0)
                    after = month_index(start) - month_index(month)
                    cohorts.append(CohortCell(month, after, size, n, divide(n, size, HUNDRED)))
        result[period] = PeriodFacts(
            totals=add_totals(stores, active.get(start, 0)),
            by_store=stores,
            by_channel=by_channel.get(start, []),
            members_total=members_to[start],
            new_members=enrolments.get(start, 0),
            previous_active=previous_totals["active"],
            previous_revenue=money(previous_totals["member_revenue"]),
            year_ago_revenue=money(
                add_totals(by_store.get(period.year_before().start, []), 0)["member_revenue"]
            ),
            retained=pairs.get((start, previous), 0),
            repeaters=repeaters.get(start, 0),
            by_kind=dict(sorted(ledger.get(start, {}).items())),
            points_before=points_before_of[start],
            cost_parts=parts[period],
            tiers=tiers_to[start],
            cohorts=cohorts,
            outstanding=outstanding.get(start),
        )
    return result


def compute_periods(
    program: Program, periods: list[Period], *, first_day: date, costs: list
) -> Iterator[PeriodResult]:
    """Every figure of `periods` (one kind, in order) from grouped queries over all of them
    (`grouped_facts`), a handful of scans whatever the number of periods: what a full
    recompute of that kind alone computes (`services.recompute_kinds` reads every kind of a
    run together, `grouped_facts_of_kinds`, and assembles each period the same way). Yields
    one PeriodResult per period, in order."""
    if not periods:
        return
    facts = grouped_facts(program, periods, first_day=first_day, costs=costs)
    for period in periods:
        yield assemble(program, period, facts[period])
