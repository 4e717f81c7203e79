"""The earning computation: purchase facts + program rules -> itemised points.

Pure functions over frozen dataclasses; no Django, no I/O. Money is Decimal, points are int.

Semantics of ``compute_points(basket, program, tier)``:

1. A rule is *in scope* when it is valid on ``basket.local_date`` (``valid_from`` and
   ``valid_until`` inclusive, None = open), its channel is "" or the basket's channel, and its
   store_id is None or the basket's store_id. Rules out of scope are ignored.
2. Minimum basket: the in-scope ``minimum_basket`` rule with the largest value (then priority
   desc, id asc) sets the threshold. A basket whose amount is below it earns 0 points, with the
   single item ``Item("minimum_basket", rule.name, rule.value, basket.amount, 0, rule.id)``.
   A basket exactly at the threshold earns normally.
3. A basket without lines is one synthetic line (sku "", category "", quantity 1,
   amount = basket.amount); only rules with no category and no SKU match it.
4. A line *matches* a rule when the rule's category is "" or the line's, and its sku is "" or
   the line's.
5. Exclusion: a line matched by an in-scope exclusion rule earns nothing. The first matching
   exclusion by (priority desc, id asc) is credited: an ``excluded`` item per rule, factor 0,
   amount = the excluded spend, 0 points.
6. Rate: the most specific in-scope matching ``rate`` rule, specificity being
   (sku set, category set, store set, channel set) compared lexicographically, then priority
   desc, then id asc; without one, the program's base rate (item ``base``, name "", rule_id
   None). Exact base points = line amount x rate.
7. Multipliers: every in-scope matching ``multiplier`` rule applies, by (priority desc, id asc),
   compounding: each adds running x (value - 1) to its item, then running = running x value.
8. Tier: a tier multiplier other than 1 then adds running x (multiplier - 1) to a ``tier`` item.
9. Items are grouped across lines by (code, rule_id), summing exact points and the spend they
   apply to; each group is then rounded once with the program's rounding (floor, nearest =
   half up, ceiling). Order: base/rate items (first appearance in line order), multiplier items
   (application order), tier, excluded (first appearance). Total = sum of rounded items; if that
   is negative (only possible with multipliers below 1), an ``adjustment`` item (name "",
   factor 0, amount 0, rule_id None) brings it back to 0.
10. ``line_points`` apportions the total over the lines with ``allocate``, weighting each line
    by its exact points after multipliers and tier (0 for excluded lines, negatives as 0).

Line amounts are expected to be >= 0; they are not validated here (hot path).
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal

__all__ = [
    "Basket",
    "Earning",
    "Item",
    "Line",
    "ProgramRules",
    "Rule",
    "TierBonus",
    "allocate",
    "compute_points",
    "prorate",
]

RATE = "rate"
MULTIPLIER = "multiplier"
EXCLUSION = "exclusion"
MINIMUM_BASKET = "minimum_basket"
KINDS = frozenset({RATE, MULTIPLIER, EXCLUSION, MINIMUM_BASKET})

ROUNDING_MODES = {"floor": ROUND_FLOOR, "nearest": ROUND_HALF_UP, "ceiling": ROUND_CEILING}

_ZERO = Decimal(0)
_ONE = Decimal(1)


@dataclass(frozen=True, slots=True)
class Line:
    """One line of a basket."""

    sku: str
    category: str
    quantity: Decimal
    amount: Decimal  # line total in currency (>= 0)


@dataclass(frozen=True, slots=True)
class Basket:
    """The facts of one purchase."""

    amount: Decimal  # total paid
    channel: str  # 'shop' | 'web' | 'app' | 'phone' | 'marketplace' | 'partner'
    store_id: int | None
    local_date: date  # purchase date in the program's time zone
    lines: tuple[Line, ...] = ()


@dataclass(frozen=True, slots=True)
class Rule:
    """One active cell of the program's earning grid (field order matches selectors)."""

    id: int
    name: str
    kind: str  # 'rate' | 'multiplier' | 'exclusion' | 'minimum_basket'
    value: Decimal  # rate, multiplier factor or minimum basket amount; ignored for exclusion
    channel: str = ""  # "" = every channel
    store_id: int | None = None  # None = every store
    category: str = ""  # "" = every category
    sku: str = ""  # "" = every SKU
    priority: int = 0
    valid_from: date | None = None  # inclusive
    valid_until: date | None = None  # inclusive


@dataclass(frozen=True, slots=True)
class ProgramRules:
    """The program's base rate, rounding mode and active earning rules."""

    base_rate: Decimal  # points per currency unit
    rounding: str  # 'floor' | 'nearest' (half up) | 'ceiling'
    rules: tuple[Rule, ...] = ()


@dataclass(frozen=True, slots=True)
class TierBonus:
    """The member's tier earning multiplier."""

    name: str
    multiplier: Decimal  # 1 means no bonus


@dataclass(frozen=True, slots=True)
class Item:
    """One line of the itemised breakdown."""

    code: str  # base | rate | multiplier | tier | excluded | minimum_basket | adjustment
    name: str  # the rule's or tier's name; "" for base and adjustment
    factor: Decimal  # rate, multiplier, minimum amount; 0 for excluded and adjustment
    amount: Decimal  # the spend this item applies to
    points: int
    rule_id: int | None  # None for base, tier and adjustment


@dataclass(frozen=True, slots=True)
class Earning:
    """The points a basket earns, itemised, and apportioned over its lines."""

    points: int  # sum of item points, never negative
    items: tuple[Item, ...]
    line_points: tuple[int, ...]  # one per basket line (one if no lines); sums to points


class _Group:
    """Accumulator for one breakdown item across lines."""

    __slots__ = ("amount", "code", "exact", "factor", "name", "rule_id")

    def __init__(self, code: str, name: str, factor: Decimal, rule_id: int | None) -> None:
        self.code = code
        self.name = name
        self.factor = factor
        self.rule_id = rule_id
        self.amount = _ZERO
        self.exact = _ZERO


def _in_scope(rule: Rule, basket: Basket) -> bool:
    return (
        (not rule.channel or rule.channel == basket.channel)
        and (rule.store_id is None or rule.store_id == basket.store_id)
        and (rule.valid_from is None or rule.valid_from <= basket.local_date)
        and (rule.valid_until is None or basket.local_date <= rule.valid_until)
    )


def _matches(rule: Rule, line: Line) -> bool:
    return (not rule.category or rule.category == line.category) and (
        not rule.sku or rule.sku == line.sku
    )


def _order(rule: Rule) -> tuple[int, int]:
    """Application order: priority desc, then id asc."""
    return (-rule.priority, rule.id)


def _rate_key(rule: Rule) -> tuple[bool, bool, bool, bool, int, int]:
    """Larger is preferred: more specific, then higher priority, then lower id."""
    return (
        rule.sku != "",
        rule.category != "",
        rule.store_id is not None,
        rule.channel != "",
        rule.priority,
        -rule.id,
    )


def _minimum_key(rule: Rule) -> tuple[Decimal, int, int]:
    """Larger is preferred: the highest threshold, then higher priority, then lower id."""
    return (rule.value, rule.priority, -rule.id)


def compute_points(basket: Basket, program: ProgramRules, tier: TierBonus | None = None) -> Earning:
    """Compute the points a basket earns under the program's rules and the member's tier.

    See the module docstring for the exact semantics. Raises ValueError on an unknown rounding
    mode or rule kind.
    """
    try:
        rounding = ROUNDING_MODES[program.rounding]
    except KeyError:
        raise ValueError(f"unknown rounding mode {program.rounding!r}") from None

    rates: list[Rule] = []
    multipliers: list[Rule] = []
    exclusions: list[Rule] = []
    minimum: Rule | None = None
    for rule in program.rules:
        kind = rule.kind
        if kind not in KINDS:
            raise ValueError(f"unknown rule kind {kind!r} (rule {rule.id})")
        if not _in_scope(rule, basket):
            continue
        if kind == RATE:
            rates.append(rule)
        elif kind == MULTIPLIER:
            multipliers.append(rule)
        elif kind == EXCLUSION:
            exclusions.append(rule)
        elif minimum is None or _minimum_key(rule) > _minimum_key(minimum):
            minimum = rule

    lines = basket.lines or (Line("", "", _ONE, basket.amount),)

    if minimum is not None and basket.amount < minimum.value:
        item = Item(MINIMUM_BASKET, minimum.name, minimum.value, basket.amount, 0, minimum.id)
        return Earning(0, (item,), (0,) * len(lines))

    multipliers.sort(key=_order)
    exclusions.sort(key=_order)
    tier_factor = None
    tier_name = ""
    if tier is not None and tier.multiplier != _ONE:
        tier_factor, tier_name = tier.multiplier, tier.name

    base_groups: dict[int | None, _Group] = {}  # rate rule id (None = base) -> group
    mult_groups: dict[int, _Group] = {}
    excl_groups: dict[int, _Group] = {}
    tier_group: _Group | None = None
    weights: list[Decimal] = []

    for line in lines:
        excluded_by = next((r for r in exclusions if _matches(r, line)), None)
        if excluded_by is not None:
            group = excl_groups.get(excluded_by.id)
            if group is None:
                group = excl_groups[excluded_by.id] = _Group(
                    "excluded", excluded_by.name, _ZERO, excluded_by.id
                )
            group.amount += line.amount
            weights.append(_ZERO)
            continue

        rate_rule = max((r for r in rates if _matches(r, line)), key=_rate_key, default=None)
        rate_id = None if rate_rule is None else rate_rule.id
        group = base_groups.get(rate_id)
        if group is None:
            if rate_rule is None:
                group = _Group("base", "", program.base_rate, None)
            else:
                group = _Group(RATE, rate_rule.name, rate_rule.value, rate_rule.id)
            base_groups[rate_id] = group
        running = line.amount * group.factor
        group.amount += line.amount
        group.exact += running

        for rule in multipliers:
            if not _matches(rule, line):
                continue
            group = mult_groups.get(rule.id)
            if group is None:
                group = mult_groups[rule.id] = _Group(MULTIPLIER, rule.name, rule.value, rule.id)
            group.amount += line.amount
            group.exact += running * (rule.value - _ONE)
            running *= rule.value

        if tier_factor is not None:
            if tier_group is None:
                tier_group = _Group("tier", tier_name, tier_factor, None)
            tier_group.amount += line.amount
            tier_group.exact += running * (tier_factor - _ONE)
            running *= tier_factor

        weights.append(running if running > _ZERO else _ZERO)

    groups = list(base_groups.values())
    # Multiplier items follow application order, not first appearance across lines.
    groups.extend(mult_groups[r.id] for r in multipliers if r.id in mult_groups)
    if tier_group is not None:
        groups.append(tier_group)
    groups.extend(excl_groups.values())

    # Each item is rounded once, after grouping, so the breakdown shows whole points per item
    # and the total is exactly their sum (rounding per line would drift on many-line baskets).
    items = [
        Item(
            g.code,
            g.name,
            g.factor,
            g.amount,
            int(g.exact.to_integral_value(rounding=rounding)),
            g.rule_id,
        )
        for g in groups
    ]
    total = sum(item.points for item in items)
    if total < 0:
        items.append(Item("adjustment", "", _ZERO, _ZERO, -total, None))
        total = 0

    return Earning(total, tuple(items), tuple(allocate(total, weights)))


def allocate(total: int, weights: Sequence[Decimal]) -> list[int]:
    """Split an integer total in proportion to non-negative weights (largest remainder).

    Each share is floor(total x weight / sum of weights); the units left over go one each to the
    largest fractional remainders, ties to the lower index. Exact (integer arithmetic), so the
    shares always sum to ``total``. All-zero weights split the total equally (zeros when the
    total is 0). Raises ValueError on a negative total or weight, or on a non-zero total with
    no weights.
    """
    if total < 0:
        raise ValueError("total must be >= 0")
    count = len(weights)
    if total == 0:
        return [0] * count
    if count == 0:
        raise ValueError("cannot allocate a non-zero total over no weights")

    ratios = [w.as_integer_ratio() for w in weights]
    if any(numerator < 0 for numerator, _ in ratios):
        raise ValueError("weights must be >= 0")
    common = math.lcm(*(denominator for _, denominator in ratios))
    scaled = [numerator * (common // denominator) for numerator, denominator in ratios]
    whole = sum(scaled)
    if whole == 0:
        scaled = [1] * count
        whole = count

    shares: list[int] = []
    remainders: list[int] = []
    for weight in scaled:
        share, remainder = divmod(total * weight, whole)
        shares.append(share)
        remainders.append(remainder)
    left = total - sum(shares)
    for index in sorted(range(count), key=lambda i: (-remainders[i], i))[:left]:
        shares[index] += 1
    return shares


def prorate(points: int, part: Decimal, whole: Decimal) -> int:
    """Points x part / whole, rounded half up (half away from zero), e.g. for a partial return.

    Exact (integer arithmetic). Raises ValueError unless whole > 0 and 0 <= part <= whole.
    """
    if whole <= 0:
        raise ValueError("whole must be > 0")
    if not 0 <= part <= whole:
        raise ValueError("part must be between 0 and whole")
    part_num, part_den = Decimal(part).as_integer_ratio()
    whole_num, whole_den = Decimal(whole).as_integer_ratio()
    numerator = points * part_num * whole_den
    denominator = part_den * whole_num
    quotient, remainder = divmod(abs(numerator), denominator)
    if 2 * remainder >= denominator:
        quotient += 1
    return quotient if numerator >= 0 else -quotient
