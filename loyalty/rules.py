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

Campaigns: ``add_campaigns(earning, basket, campaigns, facts, rounding)`` adds the campaigns'
itemised lines to an earning computed by ``compute_points``:

C1. A campaign is *eligible* when every condition it sets holds: ``starts_at <= local_time <
    ends_at`` (None = open), store, channel, tier, day of the week and hours of
    ``facts.local_time`` (the purchase's time in the program's time zone; hours are
    ``[hour_from, hour_until)``, overnight when ``hour_from > hour_until``), basket amount >=
    ``min_basket``, a basket line in ``basket_categories`` or ``basket_skus``, the member's
    ``purchase_number`` (unknown = not eligible), enrolment date in ``[enrolled_since,
    enrolled_before)``, membership of ``segment_id``.
C2. Its points: a line is a *target* when the campaign names no target category or SKU, or
    the line's category or SKU is named. ``multiplier``: each target line adds its points from
    the grid (``earning.line_points``) x (value - 1); ``per_unit``: each target line adds its
    amount x value; ``fixed``: ``int(value)`` points once, if the basket has a target line.
    The sum is rounded once with the program's rounding. A campaign giving 0 points does not
    take part.
C3. Hold-out: a member with ``hold_out_bucket(member_id, campaign_id) < holdout_percent x 100``
    is held out: the campaign gives nothing and takes no part in stacking (the member gets
    what they would get without it); it is reported as ``held_out``, with no breakdown item.
C4. A campaign in ``exhausted`` (its budget is reached) is reported as ``budget_reached``, with
    a 0-point ``campaign_skipped`` item, and takes no part in stacking.
C5. Stacking: the remaining campaigns are ordered by (priority desc, points desc, id asc).
    If the first is exclusive, it applies alone; otherwise every combinable one applies. The
    others are ``not_combined`` (0-point ``campaign_skipped`` items) and name the first as
    ``winner_id``.
C6. Each applied campaign is a ``campaign`` item (name, factor = value, amount = target spend,
    points, rule_id = campaign id) after the grid's items; its points are apportioned over its
    target lines with ``allocate`` (weights: the exact points of each line; line amounts for a
    fixed bonus) and added to ``line_points``. ``Earning.campaigns`` lists every eligible
    campaign's result, applied ones first in stacking order.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal

__all__ = [
    "Basket",
    "Campaign",
    "CampaignFacts",
    "CampaignResult",
    "Earning",
    "Item",
    "Line",
    "ProgramRules",
    "Rule",
    "TierBonus",
    "add_campaigns",
    "allocate",
    "campaign_is_eligible",
    "compute_points",
    "hold_out_bucket",
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
    rule_id: int | None  # None for base, tier and adjustment; the campaign's id for campaigns
    note: str = ""  # why a campaign applied or not (set by the caller, in the member's language)


@dataclass(frozen=True, slots=True)
class CampaignResult:
    """What one eligible campaign did to a purchase (see C3 to C5)."""

    campaign_id: int
    name: str
    status: str  # applied | held_out | budget_reached | not_combined
    points: int  # given when applied; what it would have given otherwise
    is_exclusive: bool
    priority: int
    winner_id: int | None = None  # not_combined: the campaign that came first


@dataclass(frozen=True, slots=True)
class Earning:
    """The points a basket earns, itemised, and apportioned over its lines."""

    points: int  # sum of item points, never negative
    items: tuple[Item, ...]
    line_points: tuple[int, ...]  # one per basket line (one if no lines); sums to points
    campaigns: tuple[CampaignResult, ...] = ()

    @property
    def campaign_points(self) -> int:
        """The points the applied campaigns add (a part of ``points``)."""
        return sum(c.points for c in self.campaigns if c.status == APPLIED)


# Campaign effects and outcomes.
MULTIPLY = "multiplier"
FIXED = "fixed"
PER_UNIT = "per_unit"
EFFECTS = frozenset({MULTIPLY, FIXED, PER_UNIT})
APPLIED = "applied"
HELD_OUT = "held_out"
BUDGET_REACHED = "budget_reached"
NOT_COMBINED = "not_combined"
HOLD_OUT_BUCKETS = 10_000  # hold-out shares have two decimals: 0.01% is one bucket


@dataclass(frozen=True, slots=True)
class Campaign:
    """A purchase campaign: its effect, conditions (empty = any), stacking and hold-out."""

    id: int
    name: str
    effect: str  # 'multiplier' | 'fixed' | 'per_unit'
    value: Decimal  # multiplier, whole bonus points, or points per currency unit
    starts_at: datetime  # aware; inclusive
    ends_at: datetime | None = None  # aware; exclusive; None = open
    is_exclusive: bool = False
    priority: int = 0
    target_categories: frozenset[str] = field(default_factory=frozenset)
    target_skus: frozenset[str] = field(default_factory=frozenset)
    tier_ids: frozenset[int] = field(default_factory=frozenset)
    store_ids: frozenset[int] = field(default_factory=frozenset)
    channels: frozenset[str] = field(default_factory=frozenset)
    weekdays: frozenset[int] = field(default_factory=frozenset)  # 0 = Monday
    hour_from: int | None = None  # 0..23, local
    hour_until: int | None = None  # 1..24, local, exclusive
    min_basket: Decimal | None = None
    basket_categories: frozenset[str] = field(default_factory=frozenset)
    basket_skus: frozenset[str] = field(default_factory=frozenset)
    purchase_number: int | None = None
    enrolled_since: date | None = None  # inclusive, local
    enrolled_before: date | None = None  # exclusive, local
    segment_id: int | None = None
    holdout_percent: Decimal = _ZERO


@dataclass(frozen=True, slots=True)
class CampaignFacts:
    """What campaign conditions need to know about the purchase and its member."""

    local_time: datetime  # the purchase's time in the program's time zone (aware)
    member_id: int
    tier_id: int | None = None
    enrolled_on: date | None = None  # local date of enrolment
    purchase_number: int | None = None  # this purchase's rank for the member; None = unknown
    segment_ids: frozenset[int] = field(default_factory=frozenset)


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


# Campaigns ------------------------------------------------------------------------------------


_MASK64 = (1 << 64) - 1


def hold_out_bucket(member_id: int, campaign_id: int) -> int:
    """A stable number in [0, 10000) for (member, campaign): the member is held out of the
    campaign when it is below the hold-out share x 100. A hash (the SplitMix64 finaliser of
    both ids), so the same member stays in the same group across runs and processes, and the
    groups of two campaigns are independent."""
    z = (((campaign_id << 32) ^ member_id) + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (z ^ (z >> 31)) % HOLD_OUT_BUCKETS


def is_held_out(member_id: int, campaign_id: int, holdout_percent: Decimal) -> bool:
    return hold_out_bucket(member_id, campaign_id) < holdout_percent * 100


def _in_hours(campaign: Campaign, hour: int) -> bool:
    start, end = campaign.hour_from, campaign.hour_until
    if start is None or end is None:
        return True
    if start < end:
        return start <= hour < end
    return hour >= start or hour < end  # overnight, e.g. 22 to 2


def campaign_is_eligible(campaign: Campaign, basket: Basket, facts: CampaignFacts) -> bool:
    """Whether every condition the campaign sets holds for this purchase (C1)."""
    c, when = campaign, facts.local_time
    if when < c.starts_at or (c.ends_at is not None and when >= c.ends_at):
        return False
    if c.store_ids and basket.store_id not in c.store_ids:
        return False
    if c.channels and basket.channel not in c.channels:
        return False
    if c.tier_ids and facts.tier_id not in c.tier_ids:
        return False
    if c.weekdays and when.weekday() not in c.weekdays:
        return False
    if not _in_hours(c, when.hour):
        return False
    if c.min_basket is not None and basket.amount < c.min_basket:
        return False
    if (c.basket_categories or c.basket_skus) and not any(
        line.category in c.basket_categories or line.sku in c.basket_skus for line in basket.lines
    ):
        return False
    if c.purchase_number is not None and facts.purchase_number != c.purchase_number:
        return False
    if c.enrolled_since is not None and (
        facts.enrolled_on is None or facts.enrolled_on < c.enrolled_since
    ):
        return False
    if c.enrolled_before is not None and (
        facts.enrolled_on is None or facts.enrolled_on >= c.enrolled_before
    ):
        return False
    return c.segment_id is None or c.segment_id in facts.segment_ids


def _is_target(campaign: Campaign, line: Line) -> bool:
    if not campaign.target_categories and not campaign.target_skus:
        return True
    return line.category in campaign.target_categories or line.sku in campaign.target_skus


def _campaign_effect(
    campaign: Campaign, lines: Sequence[Line], line_points: Sequence[int], rounding: str
) -> tuple[int, Decimal, list[Decimal]]:
    """(points, target spend, weight per line) of one campaign (C2)."""
    weights: list[Decimal] = []
    spend = _ZERO
    has_target = False
    for line, points in zip(lines, line_points, strict=True):
        if not _is_target(campaign, line):
            weights.append(_ZERO)
            continue
        has_target = True
        spend += line.amount
        if campaign.effect == MULTIPLY:
            weights.append(Decimal(points) * (campaign.value - _ONE))
        elif campaign.effect == PER_UNIT:
            weights.append(line.amount * campaign.value)
        else:
            weights.append(line.amount)
    if not has_target:
        return 0, spend, weights
    if campaign.effect == FIXED:
        return int(campaign.value), spend, weights
    exact = sum(weights, _ZERO)
    return int(exact.to_integral_value(rounding=rounding)), spend, weights


def _stacking_key(entry: tuple[Campaign, int, Decimal, list[Decimal]]):
    campaign, points = entry[0], entry[1]
    return (-campaign.priority, -points, campaign.id)


def add_campaigns(
    earning: Earning,
    basket: Basket,
    campaigns: Sequence[Campaign],
    facts: CampaignFacts,
    rounding: str,
    exhausted: frozenset[int] = frozenset(),
) -> Earning:
    """The earning with the campaigns' itemised lines added (see C1 to C6 in the module
    docstring). ``exhausted``: ids of campaigns whose budget is reached. Raises ValueError on
    an unknown rounding mode or effect."""
    try:
        mode = ROUNDING_MODES[rounding]
    except KeyError:
        raise ValueError(f"unknown rounding mode {rounding!r}") from None
    lines = basket.lines or (Line("", "", _ONE, basket.amount),)
    held: list[CampaignResult] = []
    skipped: list[tuple[Campaign, int, Decimal, str, int | None]] = []
    candidates = []
    for campaign in campaigns:
        if campaign.effect not in EFFECTS:
            raise ValueError(f"unknown campaign effect {campaign.effect!r} ({campaign.id})")
        if not campaign_is_eligible(campaign, basket, facts):
            continue
        points, spend, weights = _campaign_effect(campaign, lines, earning.line_points, mode)
        if points <= 0:
            continue
        if is_held_out(facts.member_id, campaign.id, campaign.holdout_percent):
            held.append(
                CampaignResult(
                    campaign.id,
                    campaign.name,
                    HELD_OUT,
                    points,
                    campaign.is_exclusive,
                    campaign.priority,
                )
            )
        elif campaign.id in exhausted:
            skipped.append((campaign, points, spend, BUDGET_REACHED, None))
        else:
            candidates.append((campaign, points, spend, weights))
    if not (held or skipped or candidates):
        return earning

    candidates.sort(key=_stacking_key)
    applied = []
    if candidates:
        lead = candidates[0][0]
        for entry in candidates:
            campaign = entry[0]
            if campaign is lead or not (lead.is_exclusive or campaign.is_exclusive):
                applied.append(entry)
            else:
                skipped.append((campaign, entry[1], entry[2], NOT_COMBINED, lead.id))

    items = list(earning.items)
    line_points = list(earning.line_points)
    results: list[CampaignResult] = []
    for campaign, points, spend, weights in applied:
        items.append(Item("campaign", campaign.name, campaign.value, spend, points, campaign.id))
        for i, share in enumerate(allocate(points, weights)):
            line_points[i] += share
        results.append(
            CampaignResult(
                campaign.id,
                campaign.name,
                APPLIED,
                points,
                campaign.is_exclusive,
                campaign.priority,
            )
        )
    for campaign, points, spend, status, winner in skipped:
        items.append(Item("campaign_skipped", campaign.name, campaign.value, spend, 0, campaign.id))
        results.append(
            CampaignResult(
                campaign.id,
                campaign.name,
                status,
                points,
                campaign.is_exclusive,
                campaign.priority,
                winner,
            )
        )
    results.extend(held)
    total = earning.points + sum(entry[1] for entry in applied)
    return Earning(total, tuple(items), tuple(line_points), tuple(results))
