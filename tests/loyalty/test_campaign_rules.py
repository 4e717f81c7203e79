"""Table tests of campaigns in the pure rules engine (loyalty/rules.py, C1 to C6).

Expected values are computed by hand. The program's time zone is Europe/Paris: the facts carry
the purchase's local time, which the conditions on days and hours read.
"""

from datetime import UTC, date, datetime
from decimal import Decimal as D
from zoneinfo import ZoneInfo

import pytest

from loyalty.rules import (
    APPLIED,
    BUDGET_REACHED,
    HELD_OUT,
    NOT_COMBINED,
    Basket,
    Campaign,
    CampaignFacts,
    Line,
    ProgramRules,
    add_campaigns,
    campaign_is_eligible,
    compute_points,
    hold_out_bucket,
    is_held_out,
)

PARIS = ZoneInfo("Europe/Paris")
START = datetime(2026, 11, 1, tzinfo=PARIS)
END = datetime(2026, 12, 1, tzinfo=PARIS)
# Monday 23 November 2026, 10:15 in Paris (09:15 UTC).
MONDAY = datetime(2026, 11, 23, 10, 15, tzinfo=PARIS)
GRID = ProgramRules(base_rate=D("1"), rounding="floor")


def campaign(id=1, effect="fixed", value="50", **kwargs):
    kwargs.setdefault("name", f"C{id}")
    return Campaign(id=id, effect=effect, value=D(value), starts_at=START, ends_at=END, **kwargs)


def facts(when=MONDAY, member_id=1, **kwargs):
    return CampaignFacts(local_time=when, member_id=member_id, **kwargs)


def line(amount, category="food", sku="SKU-1"):
    return Line(sku=sku, category=category, quantity=D(1), amount=D(amount))


def basket(*lines, amount=None, store_id=1, channel="shop"):
    total = D(amount) if amount is not None else sum((ln.amount for ln in lines), D(0))
    return Basket(total, channel, store_id, MONDAY.date(), tuple(lines))


def run(b, campaigns, f=None, rounding="floor", exhausted=frozenset(), grid=GRID):
    """add_campaigns on the grid's earning, plus the invariants every result satisfies."""
    earning = compute_points(b, grid)
    result = add_campaigns(earning, b, campaigns, f or facts(), rounding, exhausted)
    assert result.points == sum(item.points for item in result.items)
    assert sum(result.line_points) == result.points
    assert result.points == earning.points + result.campaign_points
    return result


def campaign_items(result):
    return [(i.code, i.name, i.points) for i in result.items if i.code.startswith("campaign")]


# Effects (C2) ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("effect", "value", "targets", "expected_points", "expected_spend"),
    [
        # 40 + 2.50 -> 42 grid points (floor); x2 adds 42.
        ("multiplier", "2", {}, 42, D("42.50")),
        # x1.5 on 42 = 21.
        ("multiplier", "1.5", {}, 21, D("42.50")),
        # Only the beauty line (40 points): x3 adds 80.
        ("multiplier", "3", {"target_categories": frozenset({"beauty"})}, 80, D("40.00")),
        ("fixed", "50", {}, 50, D("42.50")),
        # Fixed bonus on a SKU the basket has.
        ("fixed", "25", {"target_skus": frozenset({"SOAP"})}, 25, D("2.50")),
        # 0.5 point per euro on 42.50 = 21.25 -> 21.
        ("per_unit", "0.5", {}, 21, D("42.50")),
        # 2 points per euro on hygiene only: 2.50 x 2 = 5.
        ("per_unit", "2", {"target_categories": frozenset({"hygiene"})}, 5, D("2.50")),
    ],
)
def test_each_effect_adds_its_points_as_a_campaign_item(
    effect, value, targets, expected_points, expected_spend
):
    b = basket(line("40.00", "beauty", "CREAM"), line("2.50", "hygiene", "SOAP"))
    result = run(b, [campaign(effect=effect, value=value, **targets)])
    assert result.points == 42 + expected_points
    item = result.items[-1]
    assert (item.code, item.name, item.factor, item.amount, item.points, item.rule_id) == (
        "campaign",
        "C1",
        D(value),
        expected_spend,
        expected_points,
        1,
    )
    assert [(r.campaign_id, r.status, r.points) for r in result.campaigns] == [
        (1, APPLIED, expected_points)
    ]


def test_a_campaign_on_lines_the_basket_does_not_have_takes_no_part():
    b = basket(line("10.00", "food"))
    result = run(b, [campaign(effect="fixed", value="50", target_categories=frozenset({"toys"}))])
    assert result.points == 10
    assert result.campaigns == ()


def test_per_unit_rounds_once_with_the_programs_rounding():
    b = basket(line("10.10"), line("10.10"))  # 20.20 x 0.25 = 5.05
    assert run(b, [campaign(effect="per_unit", value="0.25")], rounding="floor").points == 20 + 5
    assert run(b, [campaign(effect="per_unit", value="0.25")], rounding="ceiling").points == 20 + 6


def test_campaign_points_go_to_the_lines_they_were_earned_on():
    b = basket(line("40.00", "beauty"), line("10.00", "food"))
    result = run(b, [campaign(effect="multiplier", value="2", target_categories={"beauty"})])
    assert result.line_points == (80, 10)
    fixed = run(b, [campaign(effect="fixed", value="10")])  # by line amount: 8 and 2
    assert fixed.line_points == (48, 12)


def test_a_multiplier_gives_nothing_on_excluded_or_zero_point_lines():
    b = basket(line("0.50"))  # 0 points with floor
    assert run(b, [campaign(effect="multiplier", value="2")]).campaigns == ()


def test_a_basket_without_lines_matches_only_untargeted_campaigns():
    b = basket(amount="30.00")
    assert run(b, [campaign(effect="fixed", value="5")]).points == 35
    assert run(b, [campaign(effect="fixed", value="5", target_skus={"X"})]).points == 30


# Conditions (C1) ------------------------------------------------------------------------------


def _eligible(c, b=None, f=None):
    return campaign_is_eligible(c, b or basket(line("20.00", "food", "BREAD")), f or facts())


@pytest.mark.parametrize(
    ("when", "eligible"),
    [
        (START, True),  # the start is inclusive: midnight in Paris on 1 November
        (datetime(2026, 10, 31, 22, 59, 59, tzinfo=UTC), False),  # 23:59:59 in Paris on 31 Oct
        (datetime(2026, 10, 31, 23, 0, tzinfo=UTC), True),  # 00:00 in Paris on 1 Nov
        (datetime(2026, 11, 30, 22, 59, 59, tzinfo=UTC), True),  # 23:59:59 in Paris, 30 Nov
        (END, False),  # the end is exclusive
        (datetime(2026, 11, 30, 23, 0, tzinfo=UTC), False),  # 00:00 in Paris on 1 December
    ],
)
def test_dates_are_compared_as_instants_with_the_start_inclusive_and_the_end_exclusive(
    when, eligible
):
    assert _eligible(campaign(), f=facts(when=when.astimezone(PARIS))) is eligible


def test_an_open_ended_campaign_runs_after_its_start():
    c = Campaign(id=1, name="open", effect="fixed", value=D(5), starts_at=START)
    assert _eligible(c, f=facts(when=datetime(2030, 1, 1, tzinfo=PARIS)))


@pytest.mark.parametrize(
    ("local", "weekdays", "eligible"),
    [
        (datetime(2026, 11, 23, 0, 30, tzinfo=PARIS), {0}, True),  # Monday 00:30 in Paris
        # Sunday 23:30 UTC is Monday 00:30 in Paris: the local day counts.
        (datetime(2026, 11, 22, 23, 30, tzinfo=UTC).astimezone(PARIS), {0}, True),
        (datetime(2026, 11, 22, 23, 30, tzinfo=PARIS), {0}, False),  # Sunday in Paris
        (datetime(2026, 11, 28, 12, 0, tzinfo=PARIS), {5, 6}, True),  # Saturday
        (datetime(2026, 11, 27, 12, 0, tzinfo=PARIS), {5, 6}, False),  # Friday
    ],
)
def test_days_of_the_week_are_the_programs_local_days(local, weekdays, eligible):
    assert _eligible(campaign(weekdays=frozenset(weekdays)), f=facts(when=local)) is eligible


@pytest.mark.parametrize(
    ("hour", "minute", "hours", "eligible"),
    [
        (17, 59, (18, 20), False),
        (18, 0, (18, 20), True),  # from is inclusive
        (19, 59, (18, 20), True),
        (20, 0, (18, 20), False),  # until is exclusive
        (23, 30, (22, 2), True),  # overnight
        (1, 59, (22, 2), True),
        (2, 0, (22, 2), False),
        (12, 0, (22, 2), False),
        (23, 59, (20, 24), True),  # 24 = until midnight
    ],
)
def test_hours_are_local_half_open_and_may_run_overnight(hour, minute, hours, eligible):
    when = datetime(2026, 11, 23, hour, minute, tzinfo=PARIS)
    c = campaign(hour_from=hours[0], hour_until=hours[1])
    assert _eligible(c, f=facts(when=when)) is eligible


def test_hours_follow_daylight_saving_time():
    # 29 March 2026: Paris moves from UTC+1 to UTC+2. 17:30 UTC is 19:30 in Paris that day.
    when = datetime(2026, 3, 29, 17, 30, tzinfo=UTC).astimezone(PARIS)
    c = Campaign(
        id=1,
        name="evening",
        effect="fixed",
        value=D(5),
        starts_at=datetime(2026, 3, 1, tzinfo=PARIS),
        hour_from=19,
        hour_until=20,
    )
    assert _eligible(c, f=facts(when=when))
    # The day before, still UTC+1: 17:30 UTC is 18:30 in Paris, outside the hours.
    assert not _eligible(
        c, f=facts(when=datetime(2026, 3, 28, 17, 30, tzinfo=UTC).astimezone(PARIS))
    )


@pytest.mark.parametrize(
    ("kwargs", "b", "f", "eligible"),
    [
        ({"store_ids": frozenset({1, 2})}, basket(line("5"), store_id=2), facts(), True),
        ({"store_ids": frozenset({1, 2})}, basket(line("5"), store_id=3), facts(), False),
        ({"channels": frozenset({"web"})}, basket(line("5"), channel="web"), facts(), True),
        ({"channels": frozenset({"web"})}, basket(line("5"), channel="shop"), facts(), False),
        ({"tier_ids": frozenset({7})}, basket(line("5")), facts(tier_id=7), True),
        ({"tier_ids": frozenset({7})}, basket(line("5")), facts(tier_id=8), False),
        ({"tier_ids": frozenset({7})}, basket(line("5")), facts(tier_id=None), False),
        ({"min_basket": D("50.00")}, basket(line("50.00")), facts(), True),  # at the minimum
        ({"min_basket": D("50.00")}, basket(line("49.99")), facts(), False),
        ({"basket_categories": frozenset({"wine"})}, basket(line("5", "wine")), facts(), True),
        ({"basket_categories": frozenset({"wine"})}, basket(line("5", "food")), facts(), False),
        ({"basket_skus": frozenset({"X1"})}, basket(line("5", sku="X1")), facts(), True),
        ({"basket_skus": frozenset({"X1"})}, basket(line("5", sku="X2")), facts(), False),
        ({"basket_skus": frozenset({"X1"})}, basket(amount="5"), facts(), False),  # no lines
        ({"purchase_number": 1}, basket(line("5")), facts(purchase_number=1), True),
        ({"purchase_number": 1}, basket(line("5")), facts(purchase_number=2), False),
        ({"purchase_number": 3}, basket(line("5")), facts(purchase_number=None), False),
        (
            {"enrolled_since": date(2026, 11, 1)},
            basket(line("5")),
            facts(enrolled_on=date(2026, 11, 1)),
            True,
        ),
        (
            {"enrolled_since": date(2026, 11, 1)},
            basket(line("5")),
            facts(enrolled_on=date(2026, 10, 31)),
            False,
        ),
        (
            {"enrolled_before": date(2026, 1, 1)},
            basket(line("5")),
            facts(enrolled_on=date(2025, 12, 31)),
            True,
        ),
        (
            {"enrolled_before": date(2026, 1, 1)},
            basket(line("5")),
            facts(enrolled_on=date(2026, 1, 1)),
            False,
        ),
        ({"segment_id": 4}, basket(line("5")), facts(segment_ids=frozenset({3, 4})), True),
        ({"segment_id": 4}, basket(line("5")), facts(segment_ids=frozenset({3})), False),
    ],
)
def test_each_condition_must_hold(kwargs, b, f, eligible):
    assert _eligible(campaign(**kwargs), b, f) is eligible


def test_an_ineligible_campaign_leaves_the_earning_unchanged():
    b = basket(line("20.00"))
    earning = compute_points(b, GRID)
    assert add_campaigns(earning, b, [campaign(min_basket=D(100))], facts(), "floor") is earning


# Stacking and priorities (C5) -----------------------------------------------------------------


def test_combinable_campaigns_all_apply_in_priority_order():
    b = basket(line("20.00"))
    result = run(b, [campaign(1, value="5", priority=1), campaign(2, value="7", priority=3)])
    assert campaign_items(result) == [("campaign", "C2", 7), ("campaign", "C1", 5)]
    assert result.points == 32


def test_an_exclusive_campaign_of_highest_priority_applies_alone():
    b = basket(line("20.00"))
    result = run(
        b,
        [
            campaign(1, value="5", priority=1),
            campaign(2, value="3", priority=5, is_exclusive=True),
            campaign(3, value="9", priority=2),
        ],
    )
    assert campaign_items(result) == [
        ("campaign", "C2", 3),
        ("campaign_skipped", "C3", 0),
        ("campaign_skipped", "C1", 0),
    ]
    assert result.points == 23
    assert [(r.campaign_id, r.status, r.winner_id) for r in result.campaigns] == [
        (2, APPLIED, None),
        (3, NOT_COMBINED, 2),
        (1, NOT_COMBINED, 2),
    ]


def test_an_exclusive_campaign_below_a_combinable_one_is_not_combined():
    b = basket(line("20.00"))
    result = run(
        b,
        [
            campaign(1, value="5", priority=3),
            campaign(2, value="50", priority=2, is_exclusive=True),
            campaign(3, value="1", priority=0),
        ],
    )
    assert campaign_items(result) == [
        ("campaign", "C1", 5),
        ("campaign", "C3", 1),
        ("campaign_skipped", "C2", 0),
    ]
    assert [(r.campaign_id, r.status, r.winner_id) for r in result.campaigns][2] == (
        2,
        NOT_COMBINED,
        1,
    )


def test_between_exclusive_campaigns_of_equal_priority_the_larger_bonus_wins_then_the_lower_id():
    b = basket(line("20.00"))
    first = run(
        b,
        [campaign(1, value="5", is_exclusive=True), campaign(2, value="8", is_exclusive=True)],
    )
    assert campaign_items(first)[0] == ("campaign", "C2", 8)
    tie = run(
        b,
        [campaign(2, value="5", is_exclusive=True), campaign(1, value="5", is_exclusive=True)],
    )
    assert campaign_items(tie)[0] == ("campaign", "C1", 5)


def test_each_campaign_is_computed_on_the_grids_points_not_on_other_campaigns():
    b = basket(line("10.00"))  # 10 grid points
    result = run(b, [campaign(1, "multiplier", "2"), campaign(2, "multiplier", "3")])
    assert campaign_items(result) == [("campaign", "C2", 20), ("campaign", "C1", 10)]
    assert result.points == 40


# Budgets and hold-out (C3, C4) ----------------------------------------------------------------


def test_a_campaign_out_of_budget_is_skipped_and_lets_the_next_one_win():
    b = basket(line("20.00"))
    campaigns = [
        campaign(1, value="30", priority=5, is_exclusive=True),
        campaign(2, value="4", priority=1),
    ]
    result = run(b, campaigns, exhausted=frozenset({1}))
    assert campaign_items(result) == [("campaign", "C2", 4), ("campaign_skipped", "C1", 0)]
    assert [(r.campaign_id, r.status) for r in result.campaigns] == [
        (2, APPLIED),
        (1, BUDGET_REACHED),
    ]


def _member_held_out_of(campaign_id, percent, held=True):
    return next(m for m in range(1, 10_000) if is_held_out(m, campaign_id, D(percent)) is held)


def test_a_held_out_member_gets_nothing_and_sees_no_item():
    member = _member_held_out_of(1, "50")
    b = basket(line("20.00"))
    result = run(b, [campaign(1, value="30", holdout_percent=D(50))], facts(member_id=member))
    assert result.points == 20
    assert campaign_items(result) == []
    assert [(r.campaign_id, r.status, r.points) for r in result.campaigns] == [(1, HELD_OUT, 30)]


def test_a_held_out_exclusive_campaign_does_not_block_the_others():
    member = _member_held_out_of(1, "50")
    b = basket(line("20.00"))
    result = run(
        b,
        [
            campaign(1, value="30", priority=9, is_exclusive=True, holdout_percent=D(50)),
            campaign(2, value="4"),
        ],
        facts(member_id=member),
    )
    assert campaign_items(result) == [("campaign", "C2", 4)]


def test_a_treated_member_gets_the_bonus():
    member = _member_held_out_of(1, "50", held=False)
    result = run(
        basket(line("20.00")),
        [campaign(1, value="30", holdout_percent=D(50))],
        facts(member_id=member),
    )
    assert result.points == 50


def test_hold_out_assignment_is_stable_and_close_to_the_requested_share():
    assert hold_out_bucket(12345, 7) == hold_out_bucket(12345, 7)
    for percent in ("10", "25", "50"):
        held = sum(is_held_out(m, 7, D(percent)) for m in range(1, 20_001))
        assert abs(held / 20_000 - float(percent) / 100) < 0.01
    # Independent between campaigns: being held out of one says little about another.
    both = sum(is_held_out(m, 7, D(50)) and is_held_out(m, 8, D(50)) for m in range(1, 20_001))
    assert abs(both / 20_000 - 0.25) < 0.01
    assert not any(is_held_out(m, 7, D(0)) for m in range(1, 2000))


def test_an_unknown_effect_or_rounding_is_refused():
    b = basket(line("5"))
    with pytest.raises(ValueError, match="effect"):
        run(b, [campaign(effect="bogus")])
    with pytest.raises(ValueError, match="rounding"):
        add_campaigns(compute_points(b, GRID), b, [], facts(), "sideways")
