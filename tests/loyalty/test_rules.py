"""Table tests of the earning computation (loyalty/rules.py). Pure: no database.

Expected values are computed by hand from the semantics in the module docstring.
"""

import ast
from datetime import date
from decimal import Decimal as D
from pathlib import Path

import pytest

from loyalty import rules
from loyalty.rules import (
    Basket,
    Earning,
    Item,
    Line,
    ProgramRules,
    Rule,
    TierBonus,
    allocate,
    compute_points,
    prorate,
)

DAY = date(2025, 3, 15)


def line(amount, category="food", sku="SKU-1", quantity="1"):
    return Line(sku=sku, category=category, quantity=D(quantity), amount=D(amount))


def basket(amount, *lines, channel="shop", store_id=1, local_date=DAY):
    return Basket(
        amount=D(amount), channel=channel, store_id=store_id, local_date=local_date, lines=lines
    )


def lines_basket(*lines, **kwargs):
    """A basket whose total is the sum of its lines."""
    return basket(sum((ln.amount for ln in lines), D(0)), *lines, **kwargs)


def rule(id, kind, value="0", name=None, **kwargs):
    return Rule(id=id, name=name or f"R{id}", kind=kind, value=D(value), **kwargs)


def program(*rules_, base_rate="1", rounding="floor"):
    return ProgramRules(base_rate=D(base_rate), rounding=rounding, rules=rules_)


def earn(b, p, tier=None):
    """compute_points plus the invariants every result must satisfy."""
    result = compute_points(b, p, tier)
    assert isinstance(result, Earning)
    assert result.points >= 0
    assert result.points == sum(item.points for item in result.items)
    assert len(result.line_points) == max(len(b.lines), 1)
    assert sum(result.line_points) == result.points
    return result


def base_item(amount, points, rate="1"):
    return Item("base", "", D(rate), D(amount), points, None)


# --- base rate and rounding ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "rate", "rounding", "expected"),
    [
        ("10.99", "1", "floor", 10),
        ("10.99", "1", "nearest", 11),
        ("10.99", "1", "ceiling", 11),
        ("10.50", "1", "nearest", 11),  # exactly half: up
        ("10.49", "1", "nearest", 10),
        ("10.50", "1", "floor", 10),
        ("10.01", "1", "ceiling", 11),
        ("10.00", "1", "ceiling", 10),  # already whole: ceiling adds nothing
        ("25.00", "0.1", "nearest", 3),  # 2.5 -> 3
        ("25.00", "0.1", "floor", 2),
        ("3.30", "0.5", "nearest", 2),  # 1.65 -> 2
        ("3.30", "0.5", "ceiling", 2),
        ("0.00", "1", "ceiling", 0),
    ],
)
def test_base_rate_rounds_with_program_mode(amount, rate, rounding, expected):
    b = basket(amount, line(amount))
    result = earn(b, program(base_rate=rate, rounding=rounding))
    assert result.points == expected
    assert result.items == (base_item(amount, expected, rate),)
    assert result.line_points == (expected,)


def test_unknown_rounding_mode_is_refused():
    with pytest.raises(ValueError, match="rounding"):
        compute_points(basket("10"), program(rounding="banker"))


def test_unknown_rule_kind_is_refused():
    with pytest.raises(ValueError, match="kind"):
        compute_points(basket("10"), program(rule(1, "cashback", "2")))


# --- rate selection --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "expected_points", "expected_item"),
    [
        ("web", 20, Item("rate", "R1", D("2"), D("10"), 20, 1)),
        ("shop", 10, base_item("10", 10)),
    ],
)
def test_channel_rate_overrides_base_rate_on_its_channel_only(
    channel, expected_points, expected_item
):
    p = program(rule(1, "rate", "2", channel="web"))
    result = earn(basket("10", line("10"), channel=channel), p)
    assert result.points == expected_points
    assert result.items == (expected_item,)


def test_store_rate_beats_channel_rate():
    # The channel rule has the higher priority, but specificity is compared first.
    p = program(
        rule(1, "rate", "2", channel="web", priority=10),
        rule(2, "rate", "3", store_id=1),
    )
    result = earn(basket("10", line("10"), channel="web", store_id=1), p)
    assert result.items == (Item("rate", "R2", D("3"), D("10"), 30, 2),)


@pytest.mark.parametrize(
    ("rate_rules", "the_line", "winner_id", "expected_points"),
    [
        pytest.param(
            [rule(1, "rate", "3", store_id=1), rule(2, "rate", "4", store_id=1, channel="web")],
            line("10"),
            2,
            40,
            id="store_and_channel_beats_store_only",
        ),
        pytest.param(
            [
                rule(1, "rate", "4", store_id=1, channel="web"),
                rule(2, "rate", "2", category="food"),
            ],
            line("10"),
            2,
            20,
            id="category_beats_store_and_channel",
        ),
        pytest.param(
            [
                rule(1, "rate", "2", category="food", store_id=1, channel="web"),
                rule(2, "rate", "5", sku="SKU-1"),
            ],
            line("10"),
            2,
            50,
            id="sku_beats_category_store_and_channel",
        ),
        pytest.param(
            [rule(1, "rate", "2", sku="SKU-1"), rule(2, "rate", "3", sku="SKU-1", category="food")],
            line("10"),
            2,
            30,
            id="sku_and_category_beats_sku_only",
        ),
        pytest.param(
            [
                rule(1, "rate", "2", category="food", priority=1),
                rule(2, "rate", "3", category="food", priority=5),
            ],
            line("10"),
            2,
            30,
            id="higher_priority_wins_between_equally_specific",
        ),
        pytest.param(
            [
                rule(7, "rate", "2", category="food", priority=5),
                rule(3, "rate", "3", category="food", priority=5),
            ],
            line("10"),
            3,
            30,
            id="lower_id_wins_between_equal_priority",
        ),
        pytest.param(
            [rule(1, "rate", "4", category="drinks"), rule(2, "rate", "2", channel="web")],
            line("10", category="food"),
            2,
            20,
            id="category_rule_of_another_category_does_not_match",
        ),
        pytest.param(
            [rule(1, "rate", "4", sku="OTHER")],
            line("10"),
            None,
            10,
            id="sku_rule_of_another_sku_falls_back_to_base",
        ),
    ],
)
def test_most_specific_matching_rate_wins(rate_rules, the_line, winner_id, expected_points):
    result = earn(basket("10", the_line, channel="web", store_id=1), program(*rate_rules))
    assert result.points == expected_points
    [item] = result.items
    assert item.rule_id == winner_id
    assert item.code == ("base" if winner_id is None else "rate")
    assert item.points == expected_points


# --- multipliers -----------------------------------------------------------------------------


def test_category_multiplier_applies_to_matching_lines_only():
    p = program(rule(1, "multiplier", "2", name="Double food", category="food"))
    b = lines_basket(line("10", category="food"), line("20", category="drinks"))
    result = earn(b, p)
    assert result.items == (
        base_item("30", 30),
        Item("multiplier", "Double food", D("2"), D("10"), 10, 1),
    )
    assert result.points == 40
    assert result.line_points == (20, 20)  # weights 20 and 20


@pytest.mark.parametrize(
    ("mult_rules", "expected_items"),
    [
        pytest.param(
            # 10 -> x2 adds 10 -> 20 -> x1.5 adds 10 -> 30
            [rule(1, "multiplier", "2", priority=10), rule(2, "multiplier", "1.5")],
            [("R1", "2", 10, 1), ("R2", "1.5", 10, 2)],
            id="higher_priority_first",
        ),
        pytest.param(
            # 10 -> x1.5 adds 5 -> 15 -> x2 adds 15 -> 30
            [rule(1, "multiplier", "2"), rule(2, "multiplier", "1.5", priority=10)],
            [("R2", "1.5", 5, 2), ("R1", "2", 15, 1)],
            id="priority_reorders_increments",
        ),
        pytest.param(
            # equal priority: lower id first; 10 -> x1.5 adds 5 -> 15 -> x2 adds 15
            [rule(9, "multiplier", "2"), rule(4, "multiplier", "1.5")],
            [("R4", "1.5", 5, 4), ("R9", "2", 15, 9)],
            id="lower_id_first_on_equal_priority",
        ),
    ],
)
def test_two_multipliers_stack_multiplicatively_with_separate_items(mult_rules, expected_items):
    result = earn(basket("10", line("10")), program(*mult_rules))
    assert result.items == (
        base_item("10", 10),
        *(Item("multiplier", n, D(f), D("10"), pts, rid) for n, f, pts, rid in expected_items),
    )
    assert result.points == 30


def test_multiplier_items_follow_application_order_not_line_order():
    # Line 1 only meets R2; line 2 meets both, and R1 (higher priority) applies first.
    p = program(
        rule(1, "multiplier", "2", category="drinks", priority=5),
        rule(2, "multiplier", "3"),
    )
    b = lines_basket(line("10", category="food"), line("5", category="drinks"))
    result = earn(b, p)
    # food: 10 -> R2 adds 20 -> 30.  drinks: 5 -> R1 adds 5 -> 10 -> R2 adds 20 -> 30.
    assert result.items == (
        base_item("15", 15),
        Item("multiplier", "R1", D("2"), D("5"), 5, 1),
        Item("multiplier", "R2", D("3"), D("15"), 40, 2),
    )
    assert result.points == 60
    assert result.line_points == (30, 30)


def test_multiplier_below_one_lowers_points_with_negative_item():
    # 10.5 -> floor 10; x0.5 increment -5.25 -> floor -6; total 4.
    result = earn(basket("10.50", line("10.50")), program(rule(1, "multiplier", "0.5")))
    assert result.items == (
        base_item("10.50", 10),
        Item("multiplier", "R1", D("0.5"), D("10.50"), -6, 1),
    )
    assert result.points == 4
    assert result.line_points == (4,)


def test_negative_total_is_clamped_to_zero_with_adjustment_item():
    # 10.5 -> floor 10; x0 increment -10.5 -> floor -11; total -1 -> adjustment +1.
    result = earn(basket("10.50", line("10.50")), program(rule(1, "multiplier", "0")))
    assert result.items == (
        base_item("10.50", 10),
        Item("multiplier", "R1", D("0"), D("10.50"), -11, 1),
        Item("adjustment", "", D("0"), D("0"), 1, None),
    )
    assert result.points == 0
    assert result.line_points == (0,)


# --- exclusions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "exclusion",
    [
        pytest.param(rule(1, "exclusion", name="No tobacco", category="tobacco"), id="by_category"),
        pytest.param(rule(1, "exclusion", name="No tobacco", sku="CIG-20"), id="by_sku"),
    ],
)
def test_excluded_line_earns_nothing_and_is_itemised(exclusion):
    p = program(exclusion, rule(2, "multiplier", "2"))
    b = lines_basket(line("10"), line("20", category="tobacco", sku="CIG-20"))
    result = earn(b, p, TierBonus("Gold", D("1.5")))
    # food: 10 -> x2 adds 10 -> 20 -> tier adds 10 -> 30; tobacco: nothing, no multiplier/tier.
    assert result.items == (
        base_item("10", 10),
        Item("multiplier", "R2", D("2"), D("10"), 10, 2),
        Item("tier", "Gold", D("1.5"), D("10"), 10, None),
        Item("excluded", "No tobacco", D("0"), D("20"), 0, 1),
    )
    assert result.points == 30
    assert result.line_points == (30, 0)


@pytest.mark.parametrize(
    ("channel", "expected_points"),
    [("marketplace", 0), ("shop", 30)],
)
def test_channel_wide_exclusion_excludes_every_line_on_that_channel(channel, expected_points):
    p = program(rule(1, "exclusion", channel="marketplace"))
    b = lines_basket(line("10"), line("20", category="drinks"), channel=channel)
    result = earn(b, p)
    assert result.points == expected_points
    if channel == "marketplace":
        assert result.items == (Item("excluded", "R1", D("0"), D("30"), 0, 1),)
        assert result.line_points == (0, 0)
    else:
        assert result.items == (base_item("30", 30),)
        assert result.line_points == (10, 20)


def test_exclusions_are_credited_to_first_rule_by_priority_and_grouped_per_rule():
    p = program(
        rule(5, "exclusion", category="tobacco"),
        rule(3, "exclusion", sku="CIG-20", priority=1),
        rule(4, "exclusion", category="lottery"),
    )
    b = lines_basket(
        line("8", category="lottery", sku="LOTTO"),
        line("7", category="tobacco", sku="CIG-10"),
        line("6", category="tobacco", sku="CIG-20"),
        line("5", category="tobacco", sku="CIG-10"),
        line("4"),
    )
    result = earn(b, p)
    # CIG-20 matches 5 and 3: 3 has the higher priority. Items by first appearance.
    assert result.items == (
        base_item("4", 4),
        Item("excluded", "R4", D("0"), D("8"), 0, 4),
        Item("excluded", "R5", D("0"), D("12"), 0, 5),
        Item("excluded", "R3", D("0"), D("6"), 0, 3),
    )
    assert result.line_points == (0, 0, 0, 0, 4)


# --- minimum basket --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "expected_points"),
    [("49.99", 0), ("50.00", 50), ("80.00", 80)],
)
def test_minimum_basket_uses_largest_in_scope_threshold(amount, expected_points):
    p = program(
        rule(1, "minimum_basket", "20"),
        rule(2, "minimum_basket", "50", name="Min 50"),
        rule(3, "minimum_basket", "100", channel="web"),  # out of scope on shop
    )
    b = basket(amount, line(amount, category="food"), line("0", category="drinks"))
    result = earn(b, p)
    assert result.points == expected_points
    if expected_points == 0:
        assert result.items == (Item("minimum_basket", "Min 50", D("50"), D(amount), 0, 2),)
        assert result.line_points == (0, 0)
    else:
        # The zero-amount line shares the base item.
        assert result.items == (base_item(amount, expected_points),)
        assert result.line_points == (expected_points, 0)


def test_minimum_basket_below_threshold_wins_over_everything_else():
    p = program(
        rule(1, "minimum_basket", "10"),
        rule(2, "rate", "5"),
        rule(3, "multiplier", "2"),
        rule(4, "exclusion", category="food"),
    )
    result = earn(basket("9.99"), p, TierBonus("Gold", D("2")))
    assert result.items == (Item("minimum_basket", "R1", D("10"), D("9.99"), 0, 1),)
    assert result.line_points == (0,)


# --- validity dates and scope ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("local_date", "expected_points"),
    [
        (date(2025, 2, 28), 10),  # the day before
        (date(2025, 3, 1), 20),  # first day
        (date(2025, 3, 31), 20),  # last day
        (date(2025, 4, 1), 10),  # the day after
    ],
)
def test_rule_is_valid_from_first_to_last_day_inclusive(local_date, expected_points):
    p = program(
        rule(1, "rate", "2", valid_from=date(2025, 3, 1), valid_until=date(2025, 3, 31)),
    )
    result = earn(basket("10", line("10"), local_date=local_date), p)
    assert result.points == expected_points


@pytest.mark.parametrize(
    ("validity", "local_date", "expected_points"),
    [
        ({"valid_from": date(2025, 3, 1)}, date(2099, 1, 1), 20),
        ({"valid_from": date(2025, 3, 1)}, date(2025, 2, 28), 10),
        ({"valid_until": date(2025, 3, 31)}, date(2000, 1, 1), 20),
        ({"valid_until": date(2025, 3, 31)}, date(2025, 4, 1), 10),
    ],
)
def test_open_ended_validity(validity, local_date, expected_points):
    p = program(rule(1, "rate", "2", **validity))
    assert earn(basket("10", line("10"), local_date=local_date), p).points == expected_points


@pytest.mark.parametrize(
    "scope",
    [
        pytest.param({"channel": "web"}, id="other_channel"),
        pytest.param({"store_id": 2}, id="other_store"),
        pytest.param({"valid_until": date(2025, 3, 14)}, id="expired"),
        pytest.param({"valid_from": date(2025, 3, 16)}, id="not_yet_valid"),
    ],
)
def test_out_of_scope_rules_are_ignored(scope):
    p = program(
        rule(1, "rate", "5", **scope),
        rule(2, "multiplier", "3", **scope),
        rule(3, "exclusion", **scope),
        rule(4, "minimum_basket", "1000", **scope),
    )
    result = earn(basket("10", line("10"), channel="shop", store_id=1), p)
    assert result.items == (base_item("10", 10),)


def test_store_rule_is_out_of_scope_for_basket_without_store():
    p = program(rule(1, "rate", "5", store_id=1))
    assert earn(basket("10", line("10"), channel="web", store_id=None), p).points == 10


# --- tier ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "mult_rules", "tier", "expected_items"),
    [
        pytest.param(
            "10",
            [],
            TierBonus("Gold", D("1.5")),
            [base_item("10", 10), Item("tier", "Gold", D("1.5"), D("10"), 5, None)],
            id="tier_adds_its_item",
        ),
        pytest.param(
            "10",
            [rule(1, "multiplier", "2")],
            TierBonus("Gold", D("1.5")),
            # 10 -> x2 adds 10 -> 20 -> tier adds 10
            [
                base_item("10", 10),
                Item("multiplier", "R1", D("2"), D("10"), 10, 1),
                Item("tier", "Gold", D("1.5"), D("10"), 10, None),
            ],
            id="tier_applies_after_rule_multipliers",
        ),
        pytest.param(
            "10.99",
            [],
            TierBonus("Gold", D("1.5")),
            # base 10.99 -> 10; tier 5.495 -> 5 (rounded per item: 15, not floor(16.485) = 16)
            [base_item("10.99", 10), Item("tier", "Gold", D("1.5"), D("10.99"), 5, None)],
            id="tier_item_rounded_on_its_own",
        ),
        pytest.param(
            "10",
            [],
            TierBonus("Basic", D("1")),
            [base_item("10", 10)],
            id="tier_multiplier_one_adds_no_item",
        ),
        pytest.param("10", [], None, [base_item("10", 10)], id="no_tier"),
    ],
)
def test_tier_multiplier(amount, mult_rules, tier, expected_items):
    result = earn(basket(amount, line(amount)), program(*mult_rules), tier)
    assert result.items == tuple(expected_items)


# --- grouping and line_points ----------------------------------------------------------------


def test_items_are_grouped_across_lines_and_rounded_once():
    p = program(rule(1, "multiplier", "2", category="food"))
    b = lines_basket(
        line("10.40", category="food"),
        line("5.30", category="food", sku="SKU-2"),
        line("4.60", category="drinks", sku="SKU-3"),
    )
    result = earn(b, p)
    # base 20.30 -> 20 (per line it would be 10 + 5 + 4 = 19); multiplier 15.70 -> 15.
    assert result.items == (
        base_item("20.30", 20),
        Item("multiplier", "R1", D("2"), D("15.70"), 15, 1),
    )
    assert result.points == 35
    # weights 20.80, 10.60, 4.60 (sum 36): quotas 20.22, 10.31, 4.47 -> 20, 10, 4 + 1 to the last
    assert result.line_points == (20, 10, 5)


def test_rate_items_appear_in_line_order_and_group_per_rule():
    p = program(rule(7, "rate", "2", category="drinks"))
    b = lines_basket(
        line("10", category="drinks"),
        line("10", category="food"),
        line("5", category="drinks"),
    )
    result = earn(b, p)
    assert result.items == (
        Item("rate", "R7", D("2"), D("15"), 30, 7),
        base_item("10", 10),
    )
    assert result.line_points == (20, 10, 10)


@pytest.mark.parametrize(
    ("amounts", "rounding", "expected_total", "expected_line_points"),
    [
        (["1", "2", "3"], "floor", 6, (1, 2, 3)),
        (["0.40", "0.40", "0.40"], "floor", 1, (1, 0, 0)),  # tie: lower index
        (["0.40", "0.40", "0.40"], "ceiling", 2, (1, 1, 0)),
        (["3.33", "3.33", "3.34"], "nearest", 10, (3, 3, 4)),
        (["99.50", "0.01"], "ceiling", 100, (100, 0)),  # quotas 99.9899, 0.0100
    ],
)
def test_line_points_sum_to_total_in_proportion(
    amounts, rounding, expected_total, expected_line_points
):
    b = lines_basket(*(line(a, sku=f"S{i}") for i, a in enumerate(amounts)))
    result = earn(b, program(rounding=rounding))
    assert result.points == expected_total
    assert result.line_points == expected_line_points


# --- basket without lines --------------------------------------------------------------------


def test_basket_without_lines_is_one_synthetic_line():
    p = program(
        rule(1, "multiplier", "3", category="food"),  # needs a category: no match
        rule(2, "exclusion", sku="SKU-1"),  # needs a SKU: no match
        rule(3, "multiplier", "2", channel="shop"),  # matches every line
        rounding="nearest",
    )
    result = earn(basket("12.25"), p)
    # 12.25 -> 12; x2 adds 12.25 -> 12
    assert result.items == (
        base_item("12.25", 12),
        Item("multiplier", "R3", D("2"), D("12.25"), 12, 3),
    )
    assert result.points == 24
    assert result.line_points == (24,)


def test_basket_without_lines_rounds_half_up():
    result = earn(basket("12.50"), program(rounding="nearest"))
    assert result.items == (base_item("12.50", 13),)
    assert result.line_points == (13,)


def test_basket_without_lines_can_be_excluded_by_channel():
    result = earn(
        basket("12.50", channel="partner"), program(rule(1, "exclusion", channel="partner"))
    )
    assert result.items == (Item("excluded", "R1", D("0"), D("12.50"), 0, 1),)
    assert result.line_points == (0,)


# --- allocate --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "weights", "expected"),
    [
        pytest.param(0, ["1", "2", "3"], [0, 0, 0], id="zero_total"),
        pytest.param(0, [], [], id="zero_total_no_weights"),
        pytest.param(0, ["0", "0"], [0, 0], id="zero_total_zero_weights"),
        pytest.param(10, ["0", "0", "0"], [4, 3, 3], id="zero_weights_split_equally"),
        pytest.param(2, ["0", "0", "0"], [1, 1, 0], id="zero_weights_ties_to_lower_index"),
        pytest.param(5, ["0", "1", "1"], [0, 3, 2], id="zero_weight_gets_nothing"),
        pytest.param(1, ["1", "1"], [1, 0], id="tie_to_lower_index"),
        pytest.param(2, ["1", "1", "1"], [1, 1, 0], id="ties_to_lower_indexes"),
        pytest.param(6, ["1", "2", "3"], [1, 2, 3], id="exact"),
        pytest.param(100, ["1", "2", "3"], [17, 33, 50], id="largest_remainder"),
        pytest.param(7, ["0.1", "0.2", "0.7"], [1, 1, 5], id="decimal_weights"),
        pytest.param(3, ["0.001", "1000"], [0, 3], id="tiny_weight"),
        pytest.param(
            10**12,
            ["1", "1", "1"],
            [333_333_333_334, 333_333_333_333, 333_333_333_333],
            id="large_total",
        ),
        pytest.param(
            10**30,
            ["1", "2"],
            [int("3" * 30), int("6" * 29 + "7")],
            id="huge_total_stays_exact",
        ),
    ],
)
def test_allocate(total, weights, expected):
    assert allocate(total, [D(w) for w in weights]) == expected


@pytest.mark.parametrize(
    ("total", "weights", "message"),
    [(-1, ["1"], "total"), (1, ["-1", "2"], "weights"), (1, [], "no weights")],
)
def test_allocate_refuses_negative_or_impossible_input(total, weights, message):
    with pytest.raises(ValueError, match=message):
        allocate(total, [D(w) for w in weights])


# --- prorate ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("points", "part", "whole", "expected"),
    [
        (100, "50", "100", 50),
        (10, "1", "3", 3),  # 3.33
        (10, "2", "3", 7),  # 6.67
        (10, "1", "4", 3),  # 2.5: half up
        (10, "3", "4", 8),  # 7.5: half up
        (99, "1", "8", 12),  # 12.375
        (15, "12.34", "49.36", 4),  # 3.75
        (7, "0", "10", 0),
        (7, "10", "10", 7),
        (0, "5", "10", 0),
    ],
)
def test_prorate_rounds_half_up(points, part, whole, expected):
    assert prorate(points, D(part), D(whole)) == expected


@pytest.mark.parametrize(
    ("part", "whole", "message"),
    [("1", "0", "whole"), ("0", "-5", "whole"), ("11", "10", "part"), ("-1", "10", "part")],
)
def test_prorate_refuses_part_outside_whole(part, whole, message):
    with pytest.raises(ValueError, match=message):
        prorate(10, D(part), D(whole))


# --- module hygiene --------------------------------------------------------------------------


def test_rules_module_imports_only_the_standard_library():
    tree = ast.parse(Path(rules.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports"
            imported.add(node.module.split(".")[0])
    assert imported <= {"collections", "dataclasses", "datetime", "decimal", "math", "typing"}
