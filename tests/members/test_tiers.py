"""Tier qualification: the pure policy (windows, supported tier, reviews, decisions) by tables,
upgrades on a purchase through the POS API, the nightly requalification, tiers set by staff and
the member's progress."""

import itertools
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

import loyalty.selectors
from config.nightly import run_job
from loyalty.models import Program, Store
from loyalty.selectors import TierInfo, program_tiers
from members import errors, tiers
from members.ledger import find_mismatches
from members.models import Member, Purchase, TierChange
from members.selectors import member_progress
from tests.factories import ProgramFactory, StaffUserFactory, StoreFactory, TierFactory, enrol
from tests.members.helpers import pos_client

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
D = Decimal
ROLLING = Program.TierWindow.ROLLING
CALENDAR = Program.TierWindow.CALENDAR_YEAR
ONE_STEP = Program.TierDowngrade.ONE_STEP
TO_QUALIFIED = Program.TierDowngrade.TO_QUALIFIED
Reason = TierChange.Reason


@pytest.fixture(autouse=True)
def _fresh_caches():
    """The tier and rule caches are per process, keyed by (program pk, updated_at): start every
    test without entries left by another test (a pk may be reused after a rollback)."""
    loyalty.selectors._TIERS_CACHE.clear()
    loyalty.selectors._RULES_CACHE.clear()
    yield
    loyalty.selectors._TIERS_CACHE.clear()
    loyalty.selectors._RULES_CACHE.clear()


# Pure policy ------------------------------------------------------------------------------------


def info(pk, name, qualify, keep, multiplier):
    return TierInfo(pk, pk - 1, name, D(qualify), D(keep), D(multiplier))


B = info(1, "Bronze", "0", "0", "1")
S = info(2, "Silver", "500", "400", "1.5")
G = info(3, "Gold", "1500", "1200", "2")
LADDER = (B, S, G)


def policy(window=ROLLING, months=12, grace=1, downgrade=ONE_STEP, tz="Europe/Paris"):
    """An unsaved program: the policy functions only read its fields."""
    return Program(
        tier_window=window,
        tier_window_months=months,
        tier_grace_periods=grace,
        tier_downgrade_policy=downgrade,
        time_zone=tz,
    )


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (date(2025, 3, 31), -1, date(2025, 2, 28)),  # clamped to the end of February
        (date(2024, 3, 31), -1, date(2024, 2, 29)),  # leap year
        (date(2025, 3, 31), 1, date(2025, 4, 30)),
        (date(2025, 1, 31), 1, date(2025, 2, 28)),
        (date(2025, 3, 31), -12, date(2024, 3, 31)),
        (date(2024, 2, 29), 12, date(2025, 2, 28)),
        (date(2025, 12, 15), 1, date(2026, 1, 15)),  # across the year end
        (date(2026, 1, 15), -13, date(2024, 12, 15)),
        (date(2025, 5, 10), 0, date(2025, 5, 10)),
    ],
)
def test_add_months_clamps_to_month_end(day, months, expected):
    assert tiers.add_months(day, months) == expected


@pytest.mark.parametrize(
    ("window", "months", "as_of", "first"),
    [
        (ROLLING, 12, date(2026, 3, 31), date(2025, 4, 1)),
        (ROLLING, 12, date(2026, 3, 15), date(2025, 3, 16)),
        (ROLLING, 12, date(2026, 2, 28), date(2025, 3, 1)),
        (ROLLING, 12, date(2024, 2, 29), date(2023, 3, 1)),
        (ROLLING, 1, date(2025, 3, 31), date(2025, 3, 1)),  # from 31 March, clamped
        (ROLLING, 6, date(2025, 8, 31), date(2025, 3, 1)),
        (CALENDAR, 12, date(2026, 3, 31), date(2026, 1, 1)),
        (CALENDAR, 12, date(2026, 1, 1), date(2026, 1, 1)),
        (CALENDAR, 12, date(2025, 12, 31), date(2025, 1, 1)),
    ],
)
def test_qualification_window(window, months, as_of, first):
    assert tiers.qualification_window(policy(window, months), as_of) == (first, as_of)


@pytest.mark.parametrize(
    ("tz", "as_of", "start_utc", "end_utc"),
    [
        # Local midnights of the first day and of the day after the last, as UTC instants.
        ("Europe/Paris", date(2026, 3, 31), datetime(2025, 3, 31, 22), datetime(2026, 3, 31, 22)),
        ("Europe/Paris", date(2026, 1, 31), datetime(2025, 1, 31, 23), datetime(2026, 1, 31, 23)),
        ("America/New_York", date(2026, 1, 31), datetime(2025, 2, 1, 5), datetime(2026, 2, 1, 5)),
        ("UTC", date(2026, 1, 31), datetime(2025, 2, 1), datetime(2026, 2, 1)),
    ],
)
def test_window_bounds_are_local_midnights(tz, as_of, start_utc, end_utc):
    start, end = tiers.window_bounds(policy(tz=tz), as_of)
    utc = ZoneInfo("UTC")
    assert start == start_utc.replace(tzinfo=utc)
    assert end == end_utc.replace(tzinfo=utc)
    assert start.tzinfo == ZoneInfo(tz)


@pytest.mark.parametrize(
    ("value", "current", "expected"),
    [
        (D("0"), None, B),
        (D("499.99"), None, B),
        (D("500"), None, S),
        (D("450"), None, B),  # the keep threshold is only for the member's current tier
        (D("450"), B, B),
        (D("450"), S, S),  # keeps Silver above its keep threshold
        (D("400"), S, S),
        (D("399.99"), S, B),
        (D("1300"), G, G),
        (D("1300"), S, S),  # not enough to qualify for Gold
        (D("1199.99"), G, S),
        (D("1500"), S, G),
        (D("99999"), B, G),
    ],
)
def test_supported_tier_with_keep_thresholds(value, current, expected):
    assert tiers.supported_tier(LADDER, value, current) == expected


def test_supported_tier_is_none_below_every_threshold():
    assert tiers.supported_tier((S, G), D("100")) is None
    assert tiers.supported_tier((), D("100")) is None


@pytest.mark.parametrize(
    ("window", "months", "grace", "earned_on", "after", "expected"),
    [
        (ROLLING, 12, 0, date(2025, 3, 15), date(2025, 3, 15), date(2025, 3, 16)),  # nightly
        (ROLLING, 12, 1, date(2025, 3, 15), date(2025, 3, 15), date(2026, 3, 15)),
        (ROLLING, 12, 2, date(2025, 3, 15), date(2025, 3, 15), date(2027, 3, 15)),
        (ROLLING, 12, 1, date(2024, 2, 29), date(2024, 2, 29), date(2025, 2, 28)),
        (ROLLING, 6, 1, date(2025, 8, 31), date(2025, 8, 31), date(2026, 2, 28)),
        (ROLLING, 6, 2, date(2025, 8, 31), date(2025, 8, 31), date(2026, 8, 31)),
        (CALENDAR, 12, 0, date(2025, 6, 10), date(2025, 6, 10), date(2026, 1, 1)),
        (CALENDAR, 12, 1, date(2025, 6, 10), date(2025, 6, 10), date(2027, 1, 1)),
        (CALENDAR, 12, 2, date(2025, 6, 10), date(2025, 6, 10), date(2028, 1, 1)),
        # Never before the day after `after`.
        (CALENDAR, 12, 0, date(2025, 12, 31), date(2026, 1, 1), date(2026, 1, 2)),
        (CALENDAR, 12, 1, date(2026, 12, 31), date(2027, 1, 1), date(2028, 1, 1)),
    ],
)
def test_next_review(window, months, grace, earned_on, after, expected):
    program = policy(window, months, grace)
    assert tiers.next_review(program, earned_on, after=after) == expected


NIGHT = date(2026, 3, 15)  # reviews the window as of 14 March 2026
NEXT = date(2027, 3, 14)  # the next review of a tier earned or kept on 14 March 2026 (grace 1)


@pytest.mark.parametrize(
    ("downgrade", "current", "value", "review_on", "manual_until", "expected"),
    [
        # Upgrades at any time, even inside the grace; they end a tier set by staff.
        (ONE_STEP, S, D("1500"), date(2027, 1, 1), None, (G, Reason.REQUALIFICATION, NEXT, True)),
        (ONE_STEP, S, D("1600"), None, date(2026, 12, 31), (G, Reason.REQUALIFICATION, NEXT, True)),
        (ONE_STEP, B, D("600"), None, None, (S, Reason.REQUALIFICATION, NEXT, True)),
        # No downgrade inside the grace.
        (ONE_STEP, G, D("0"), date(2026, 3, 16), None, None),
        (TO_QUALIFIED, G, D("0"), date(2026, 3, 16), None, None),
        # Downgrade on (or after) the review date: one step, or straight to what is supported.
        (ONE_STEP, G, D("0"), date(2026, 3, 15), None, (S, Reason.DOWNGRADE, NEXT, False)),
        (ONE_STEP, G, D("0"), date(2026, 2, 1), None, (S, Reason.DOWNGRADE, NEXT, False)),
        (TO_QUALIFIED, G, D("0"), date(2026, 3, 15), None, (B, Reason.DOWNGRADE, None, False)),
        (TO_QUALIFIED, G, D("600"), date(2026, 3, 15), None, (S, Reason.DOWNGRADE, NEXT, False)),
        (ONE_STEP, S, D("399.99"), date(2026, 3, 15), None, (B, Reason.DOWNGRADE, None, False)),
        # Renewal when the value still supports the tier (keep threshold).
        (ONE_STEP, G, D("1200"), date(2026, 3, 15), None, (G, None, NEXT, False)),
        (ONE_STEP, S, D("400"), date(2026, 3, 1), None, (S, None, NEXT, False)),
        # The entry tier is never reviewed.
        (ONE_STEP, B, D("0"), None, None, None),
        # A tier set by staff, still running (its end date is inclusive).
        (ONE_STEP, G, D("0"), None, date(2026, 3, 15), None),
        (ONE_STEP, G, D("0"), date(2026, 3, 1), date(2026, 4, 1), None),
        # Ended: to the supported tier (straight, whatever the policy), or kept if supported.
        (ONE_STEP, G, D("600"), None, date(2026, 3, 14), (S, Reason.MANUAL_ENDED, NEXT, True)),
        (ONE_STEP, G, D("0"), None, date(2026, 3, 14), (B, Reason.MANUAL_ENDED, None, True)),
        (ONE_STEP, G, D("1300"), None, date(2026, 3, 14), (G, None, NEXT, True)),
        (ONE_STEP, B, D("0"), None, date(2026, 3, 14), (B, None, None, True)),
        # A member without a tier gets the supported one.
        (ONE_STEP, None, D("0"), None, None, (B, Reason.REQUALIFICATION, None, True)),
        (ONE_STEP, None, D("700"), None, None, (S, Reason.REQUALIFICATION, NEXT, True)),
    ],
)
def test_decide(downgrade, current, value, review_on, manual_until, expected):
    program = policy(ROLLING, 12, 1, downgrade)
    decision = tiers.decide(
        program,
        LADDER,
        current,
        value,
        review_on=review_on,
        manual_until=manual_until,
        night=NIGHT,
    )
    if expected is None:
        assert decision is None
    else:
        tier, reason, next_on, clear_manual = expected
        assert decision == tiers.Decision(tier, reason, next_on, clear_manual)


@pytest.mark.parametrize(
    ("window", "grace", "night", "value", "expected"),
    [
        # Rolling, grace 0: reviewed every night.
        (ROLLING, 0, date(2026, 3, 15), D("1300"), (G, None, date(2026, 3, 16))),
        (ROLLING, 0, date(2026, 3, 15), D("1000"), (S, Reason.DOWNGRADE, date(2026, 3, 16))),
        (ROLLING, 2, date(2026, 3, 15), D("1000"), (S, Reason.DOWNGRADE, date(2028, 3, 14))),
        # Calendar year: the review on 1 January looks at the year that just ended.
        (CALENDAR, 1, date(2027, 1, 1), D("1300"), (G, None, date(2028, 1, 1))),
        (CALENDAR, 2, date(2027, 1, 1), D("1300"), (G, None, date(2029, 1, 1))),
        (CALENDAR, 1, date(2027, 1, 1), D("0"), (S, Reason.DOWNGRADE, date(2028, 1, 1))),
    ],
)
def test_decide_review_dates_by_window_and_grace(window, grace, night, value, expected):
    program = policy(window, 12, grace)
    decision = tiers.decide(
        program, LADDER, G, value, review_on=night, manual_until=None, night=night
    )
    assert (decision.tier, decision.reason, decision.review_on) == expected


# Database helpers -------------------------------------------------------------------------------

_receipts = itertools.count(1)


def make_program(**kwargs):
    """A program with Bronze (entry), Silver (500, keep 400, x1.5) and Gold (1500, keep 1200,
    x2); returned fresh from the database, so its updated_at is the tiers' version."""
    kwargs.setdefault("return_window_days", 0)
    program = ProgramFactory(**kwargs)
    TierFactory(program=program, name="Bronze", rank=0, perks="Birthday gift")
    TierFactory(
        program=program,
        name="Silver",
        rank=1,
        qualify_threshold=D("500"),
        retain_threshold=D("400"),
        earn_multiplier=D("1.5"),
        perks="Free delivery\n\n  Early access to sales  \n",
    )
    TierFactory(
        program=program,
        name="Gold",
        rank=2,
        qualify_threshold=D("1500"),
        retain_threshold=D("1200"),
        earn_multiplier=D("2"),
        perks="Free delivery\nPersonal shopper",
    )
    return Program.objects.get(pk=program.pk)


def tier(program, name):
    return program.tiers.get(name=name)


def make_store(program):
    return Store.objects.select_related("program").get(pk=StoreFactory(program=program).pk)


def make_member(program, tier_name="Bronze", *, review_on=None, manual_until=None, bound="0"):
    member = enrol(program, email=f"m{next(_receipts)}@example.fr")
    Member.objects.filter(pk=member.pk).update(
        tier=tier(program, tier_name),
        tier_review_on=review_on,
        tier_manual_until=manual_until,
        qualifying_bound=D(bound),
    )
    return fresh(member)


def fresh(member):
    return Member.objects.select_related("program", "tier").get(pk=member.pk)


def past_purchase(member, store, amount, at, *, returned="0"):
    """A purchase row written directly (history older than the back-dating window); no points,
    so the ledger stays consistent. Only for the spend metric."""
    return Purchase.objects.create(
        program=store.program,
        store=store,
        member=member,
        receipt_id=f"H-{next(_receipts)}",
        total_amount=D(amount),
        returned_amount=D(returned),
        currency="EUR",
        occurred_at=at,
        points_earned=0,
        released_at=at,
        request_hash="0" * 64,
        response="{}",
    )


def paris(*args):
    return datetime(*args, tzinfo=PARIS)


def night_of(day, tz=PARIS):
    """The moment of the nightly run for local date `day`: 03:00 local."""
    return datetime.combine(day, time(3), tzinfo=tz)


def requalify(program, day, **kwargs):
    summary = run_job("requalify_tiers", now=night_of(day, program.tzinfo), programs=[program])
    result = summary[program.slug]
    assert result["night"] == day.isoformat()
    return result


def state(member):
    member = fresh(member)
    return (
        member.tier.name if member.tier_id else None,
        member.tier_review_on,
        member.tier_manual_until,
        member.qualifying_bound,
    )


def changes(member):
    return list(
        TierChange.objects.filter(member=member)
        .order_by("pk")
        .values_list("from_tier__name", "to_tier__name", "reason", "qualifying_value")
    )


# Windows in the database, in the program's time zone --------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("window", "tz", "as_of", "at", "counts"),
    [
        # Rolling 12 months as of 14 March 2026: 15 March 2025 .. 14 March 2026.
        (ROLLING, PARIS, date(2026, 3, 14), paris(2025, 3, 15, 0, 0), True),  # first day
        (ROLLING, PARIS, date(2026, 3, 14), paris(2025, 3, 14, 23, 59, 59), False),  # day before
        (ROLLING, PARIS, date(2026, 3, 14), paris(2026, 3, 14, 23, 59, 59), True),  # last day
        (ROLLING, PARIS, date(2026, 3, 14), paris(2026, 3, 15, 0, 0), False),  # day after
        # Rolling from 31 March: the window as of 30 March 2026 starts on 31 March 2025.
        (ROLLING, PARIS, date(2026, 3, 30), paris(2025, 3, 31, 9), True),
        (ROLLING, PARIS, date(2026, 3, 30), paris(2025, 3, 30, 9), False),
        # Calendar year 2025 as of 31 December 2025.
        (CALENDAR, PARIS, date(2025, 12, 31), paris(2025, 1, 1, 0, 0), True),
        (CALENDAR, PARIS, date(2025, 12, 31), paris(2024, 12, 31, 23, 59), False),
        (CALENDAR, PARIS, date(2025, 12, 31), paris(2025, 12, 31, 23, 30), True),
        (CALENDAR, PARIS, date(2025, 12, 31), paris(2026, 1, 1, 0, 0), False),
        # Local dates, not UTC ones. 00:30 in Paris on 1 January is still 31 December in UTC:
        (CALENDAR, PARIS, date(2025, 12, 31), paris(2025, 1, 1, 0, 30), True),
        # 23:30 UTC on 31 December is already 1 January in Paris:
        (
            CALENDAR,
            PARIS,
            date(2025, 12, 31),
            datetime(2025, 12, 31, 23, 30, tzinfo=ZoneInfo("UTC")),
            False,
        ),
        # 23:30 in New York on 31 December is 1 January in UTC, and still counts for 2025:
        (
            CALENDAR,
            NEW_YORK,
            date(2025, 12, 31),
            datetime(2025, 12, 31, 23, 30, tzinfo=NEW_YORK),
            True,
        ),
        (
            CALENDAR,
            NEW_YORK,
            date(2025, 12, 31),
            datetime(2024, 12, 31, 23, 30, tzinfo=NEW_YORK),
            False,
        ),
    ],
)
def test_qualifying_value_window_boundaries(window, tz, as_of, at, counts):
    program = make_program(tier_window=window, time_zone=str(tz))
    store = make_store(program)
    member = make_member(program)
    past_purchase(member, store, "100.00", at)
    past_purchase(member, store, "0.50", datetime.combine(as_of, time(12), tzinfo=tz))
    expected = D("100.50") if counts else D("0.50")
    assert tiers.qualifying_value(program, member.pk, as_of) == expected


@pytest.mark.django_db
def test_qualifying_value_is_net_of_returns_and_ignores_other_members():
    program = make_program()
    store = make_store(program)
    member, other = make_member(program), make_member(program)
    past_purchase(member, store, "300.00", paris(2026, 1, 10, 12), returned="120.25")
    past_purchase(member, store, "50.10", paris(2026, 2, 10, 12))
    past_purchase(other, store, "999.00", paris(2026, 2, 10, 12))
    assert tiers.qualifying_value(program, member.pk, date(2026, 3, 1)) == D("229.85")


# Upgrade on a purchase (POS API) ----------------------------------------------------------------


def buy(client, member, amount, receipt=None, occurred_at=None):
    body = {
        "receipt_id": receipt or f"R-{next(_receipts)}",
        "amount": amount,
        "currency": "EUR",
        "occurred_at": (occurred_at or timezone.now() - timedelta(minutes=5)).isoformat(),
        "card_number": member.card_number,
    }
    response = client.post("/api/v1/purchases/", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def give_back(client, receipt, amount):
    body = {"return_id": f"RET-{next(_receipts)}", "amount": amount}
    response = client.post(f"/api/v1/purchases/{receipt}/returns/", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def local_today(program):
    return timezone.localtime(timezone.now(), program.tzinfo).date()


@pytest.mark.django_db
def test_purchase_that_crosses_the_threshold_upgrades_at_once():
    program = make_program()
    store = make_store(program)
    client = pos_client(store)
    member = make_member(program)

    first = buy(client, member, "300.00")
    assert (first["tier"], first["tier_upgrade"], first["points_earned"]) == ("Bronze", None, 300)
    assert state(member)[0] == "Bronze"
    assert fresh(member).qualifying_bound == D("300.00")
    assert not TierChange.objects.filter(member=member).exists()

    crossing = buy(client, member, "250.00", receipt="R-CROSS")
    assert crossing["tier"] == "Silver"
    assert crossing["tier_upgrade"] == {"from": "Bronze", "to": "Silver"}
    assert crossing["points_earned"] == 250  # at the old tier's multiplier (Bronze x1)

    today = local_today(program)
    member = fresh(member)
    assert member.tier.name == "Silver"
    assert member.tier_review_on == tiers.next_review(program, today, after=today)
    assert member.tier_review_on == tiers.add_months(today, 12)
    assert member.tier_manual_until is None
    assert member.qualifying_bound == D("550.00")
    change = TierChange.objects.get(member=member)
    assert change.reason == Reason.PURCHASE
    assert change.purchase == Purchase.objects.get(store=store, receipt_id="R-CROSS")
    assert (change.from_tier.name, change.to_tier.name) == ("Bronze", "Silver")
    assert change.qualifying_value == D("550.00")

    after = buy(client, member, "100.00")  # now at Silver's multiplier, no further upgrade
    assert (after["tier"], after["tier_upgrade"], after["points_earned"]) == ("Silver", None, 150)
    assert TierChange.objects.filter(member=member).count() == 1
    assert find_mismatches() == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("start", "amount", "expected_tier", "upgrade"),
    [
        ("Bronze", "499.99", "Bronze", None),
        ("Bronze", "500.00", "Silver", {"from": "Bronze", "to": "Silver"}),
        ("Bronze", "1600.00", "Gold", {"from": "Bronze", "to": "Gold"}),  # skips Silver
        ("Silver", "1499.99", "Silver", None),
        ("Silver", "1500.00", "Gold", {"from": "Silver", "to": "Gold"}),
        ("Gold", "5000.00", "Gold", None),  # top tier
    ],
)
def test_single_purchase_upgrades_only_when_it_crosses(start, amount, expected_tier, upgrade):
    program = make_program()
    store = make_store(program)
    member = make_member(program, start, review_on=date(2099, 1, 1) if start != "Bronze" else None)
    body = buy(pos_client(store), member, amount)
    assert body["tier"] == expected_tier
    assert body["tier_upgrade"] == upgrade
    assert state(member)[0] == expected_tier
    assert fresh(member).qualifying_bound == D(amount)
    assert TierChange.objects.filter(member=member).count() == (1 if upgrade else 0)
    assert find_mismatches() == []


@pytest.mark.django_db
def test_points_metric_upgrades_on_points_earned():
    program = make_program(tier_metric=Program.TierMetric.POINTS, base_earn_rate=D("2"))
    store = make_store(program)
    client = pos_client(store)
    member = make_member(program)

    first = buy(client, member, "200.00")  # 400 points
    assert (first["points_earned"], first["tier_upgrade"]) == (400, None)
    assert fresh(member).qualifying_bound == D("400")

    second = buy(client, member, "60.00")  # 120 points: 520 >= 500
    assert second["tier_upgrade"] == {"from": "Bronze", "to": "Silver"}
    assert second["points_earned"] == 120
    change = TierChange.objects.get(member=member)
    assert (change.reason, change.qualifying_value) == (Reason.PURCHASE, D("520"))
    assert fresh(member).qualifying_bound == D("520")
    assert find_mismatches() == []


@pytest.mark.django_db
def test_purchase_does_not_look_up_history_the_bound_excludes_then_the_night_upgrades():
    """The qualifying bound spares the lookup: history the bound does not know of (here written
    directly) is seen at the next nightly run, which also sets the exact bound."""
    program = make_program()
    store = make_store(program)
    member = make_member(program)
    past_purchase(member, store, "450.00", timezone.now() - timedelta(days=40))
    body = buy(pos_client(store), member, "60.00")
    assert body["tier_upgrade"] is None
    assert fresh(member).qualifying_bound == D("60.00")

    tomorrow = local_today(program) + timedelta(days=1)
    result = requalify(program, tomorrow)
    assert result["upgrades"] == 1
    member = fresh(member)
    assert member.tier.name == "Silver"
    assert member.qualifying_bound == D("510.00")
    assert changes(member) == [("Bronze", "Silver", Reason.REQUALIFICATION, D("510.00"))]
    assert member.tier_review_on == tiers.add_months(tomorrow - timedelta(days=1), 12)
    assert find_mismatches() == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("grace", "expected"),
    [
        (0, ("Bronze", None)),  # reviewed nightly: the return costs the tier the next night
        (1, ("Silver", "review")),  # kept within the grace
    ],
)
def test_returns_reduce_the_qualifying_spend(grace, expected):
    program = make_program(tier_grace_periods=grace)
    store = make_store(program)
    client = pos_client(store)
    member = make_member(program)
    assert buy(client, member, "600.00", receipt="R-BIG")["tier"] == "Silver"
    review_on = fresh(member).tier_review_on

    returned = give_back(client, "R-BIG", "250.00")
    assert returned["points_reversed"] == 250
    assert tiers.qualifying_value(program, member.pk, local_today(program)) == D("350.00")

    tomorrow = local_today(program) + timedelta(days=1)
    requalify(program, tomorrow)
    tier_name, review = expected
    assert state(member)[0] == tier_name
    assert fresh(member).qualifying_bound == D("350.00")  # exact, net of the return
    if review:
        assert fresh(member).tier_review_on == review_on
        assert [c[2] for c in changes(member)] == [Reason.PURCHASE]
    else:
        assert changes(member)[-1] == ("Silver", "Bronze", Reason.DOWNGRADE, D("350.00"))
    assert find_mismatches() == []


@pytest.mark.django_db
def test_points_metric_is_net_of_returns_at_night():
    program = make_program(tier_metric=Program.TierMetric.POINTS, tier_grace_periods=0)
    store = make_store(program)
    client = pos_client(store)
    member = make_member(program)
    assert buy(client, member, "520.00", receipt="R-P")["tier"] == "Silver"
    give_back(client, "R-P", "200.00")  # 200 points reversed: 320 < keep 400

    requalify(program, local_today(program) + timedelta(days=1))
    assert state(member)[0] == "Bronze"
    assert fresh(member).qualifying_bound == D("320")
    assert changes(member)[-1] == ("Silver", "Bronze", Reason.DOWNGRADE, D("320"))
    assert find_mismatches() == []


# Nightly requalification ------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("downgrade", "to", "review_on"),
    [
        (ONE_STEP, "Silver", date(2027, 3, 14)),
        (TO_QUALIFIED, "Bronze", None),
    ],
)
def test_grace_then_downgrade_by_policy(downgrade, to, review_on):
    program = make_program(tier_downgrade_policy=downgrade)
    store = make_store(program)
    member = make_member(program, "Gold", review_on=date(2026, 3, 15), bound="99999")
    past_purchase(member, store, "1600.00", paris(2024, 6, 1, 12))  # out of the window
    past_purchase(member, store, "100.00", paris(2025, 6, 1, 12))

    result = requalify(program, date(2026, 3, 14))  # still within the grace
    assert (result["downgrades"], result["bounds"]) == (0, 1)
    assert state(member) == ("Gold", date(2026, 3, 15), None, D("100.00"))
    assert changes(member) == []

    result = requalify(program, date(2026, 3, 15))  # review date
    assert (result["downgrades"], result["bounds"]) == (1, 0)
    assert state(member) == (to, review_on, None, D("100.00"))
    assert changes(member) == [("Gold", to, Reason.DOWNGRADE, D("100.00"))]
    change = TierChange.objects.get(member=member)
    assert change.created_at == night_of(date(2026, 3, 15))
    assert change.purchase is None


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (paris(2025, 3, 15, 0, 30), ("Silver", None, date(2027, 3, 14))),  # first day: renewed
        (paris(2025, 3, 14, 23, 30), ("Bronze", Reason.DOWNGRADE, None)),  # the day before
        (paris(2026, 3, 14, 23, 30), ("Silver", None, date(2027, 3, 14))),  # last day
        (paris(2026, 3, 15, 0, 30), ("Bronze", Reason.DOWNGRADE, None)),  # the night's own day
    ],
)
def test_review_window_boundaries(at, expected):
    """The review on night T looks at the window as of T - 1, in local dates."""
    program = make_program()
    store = make_store(program)
    member = make_member(program, "Silver", review_on=date(2026, 3, 15))
    past_purchase(member, store, "450.00", at)  # above Silver's keep threshold
    requalify(program, date(2026, 3, 15))
    tier_name, reason, review_on = expected
    assert state(member)[:2] == (tier_name, review_on)
    assert [c[2] for c in changes(member)] == ([reason] if reason else [])


@pytest.mark.django_db
def test_night_is_the_local_date_of_the_run():
    program = make_program()
    make_member(program, "Silver", review_on=date(2026, 3, 15))
    # 00:30 in Paris on 15 March is still 14 March in UTC: the night is the 15th.
    summary = run_job("requalify_tiers", now=paris(2026, 3, 15, 0, 30), programs=[program])
    assert summary[program.slug]["night"] == "2026-03-15"
    assert summary[program.slug]["downgrades"] == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("spend_at", "expected"),
    [
        (paris(2026, 12, 31, 23, 30), ("Gold", None, date(2028, 1, 1))),  # 2026 counts: renewed
        (paris(2025, 12, 31, 12, 0), ("Silver", Reason.DOWNGRADE, date(2028, 1, 1))),
        (paris(2027, 1, 1, 0, 30), ("Silver", Reason.DOWNGRADE, date(2028, 1, 1))),
    ],
)
def test_calendar_year_review_on_first_january(spend_at, expected):
    program = make_program(tier_window=CALENDAR, tier_grace_periods=1)
    store = make_store(program)
    member = make_member(program, "Gold", review_on=date(2027, 1, 1))
    past_purchase(member, store, "1300.00", spend_at)
    requalify(program, date(2026, 12, 31))
    assert state(member)[:2] == ("Gold", date(2027, 1, 1))
    requalify(program, date(2027, 1, 1))
    tier_name, reason, review_on = expected
    assert state(member)[:2] == (tier_name, review_on)
    assert [c[2] for c in changes(member)] == ([reason] if reason else [])


@pytest.mark.django_db
def test_nightly_upgrade_and_member_without_tier():
    program = make_program()
    store = make_store(program)
    bronze = make_member(program)
    past_purchase(bronze, store, "1500.00", paris(2026, 2, 1, 12))
    tierless = make_member(program)
    Member.objects.filter(pk=tierless.pk).update(tier=None)
    entry_level = make_member(program)

    result = requalify(program, date(2026, 3, 1))
    assert result["upgrades"] == 2
    assert state(bronze)[:2] == ("Gold", date(2027, 2, 28))
    assert changes(bronze) == [("Bronze", "Gold", Reason.REQUALIFICATION, D("1500.00"))]
    assert state(tierless)[:2] == ("Bronze", None)
    assert changes(tierless) == [(None, "Bronze", Reason.REQUALIFICATION, D("0.00"))]
    assert state(entry_level)[:2] == ("Bronze", None)
    assert changes(entry_level) == []


@pytest.mark.django_db
def test_requalification_is_idempotent_and_dry_run_writes_nothing():
    program = make_program()
    store = make_store(program)
    falling = make_member(program, "Gold", review_on=date(2026, 3, 1), bound="5000")
    rising = make_member(program)
    past_purchase(rising, store, "700.00", paris(2026, 1, 5, 12))
    renewing = make_member(program, "Silver", review_on=date(2026, 2, 20), bound="450")
    past_purchase(renewing, store, "450.00", paris(2025, 12, 5, 12))
    members = (falling, rising, renewing)
    before = [state(m) for m in members]
    now = night_of(date(2026, 3, 1))

    dry = run_job("requalify_tiers", now=now, programs=[program], dry_run=True)[program.slug]
    assert (dry["upgrades"], dry["downgrades"], dry["renewed"]) == (1, 1, 1)
    assert [state(m) for m in members] == before
    assert not TierChange.objects.exists()

    first = run_job("requalify_tiers", now=now, programs=[program])[program.slug]
    assert {k: first[k] for k in ("upgrades", "downgrades", "renewed", "bounds")} == {
        "upgrades": 1,
        "downgrades": 1,
        "renewed": 1,
        "bounds": 2,  # falling (5000 -> 0) and rising (0 -> 700); renewing's bound was exact
    }
    after = [state(m) for m in members]
    assert after == [
        ("Silver", date(2027, 2, 28), None, D("0.00")),
        ("Silver", date(2027, 2, 28), None, D("700.00")),
        ("Silver", date(2027, 2, 28), None, D("450.00")),
    ]
    assert TierChange.objects.count() == 2

    second = run_job("requalify_tiers", now=now + timedelta(hours=2), programs=[program])
    second = second[program.slug]
    assert {k: second[k] for k in ("upgrades", "downgrades", "renewed", "bounds", "batches")} == {
        "upgrades": 0,
        "downgrades": 0,
        "renewed": 0,
        "bounds": 0,
        "batches": 0,
    }
    assert [state(m) for m in members] == after
    assert TierChange.objects.count() == 2


@pytest.mark.django_db
def test_requalification_in_small_batches_and_closed_members_are_skipped():
    program = make_program()
    store = make_store(program)
    members = [make_member(program) for _ in range(5)]
    for member in members:
        past_purchase(member, store, "600.00", paris(2026, 2, 1, 12))
    Member.objects.filter(pk=members[0].pk).update(status=Member.Status.CLOSED)
    summary = run_job(
        "requalify_tiers", now=night_of(date(2026, 3, 1)), programs=[program], batch_size=2
    )[program.slug]
    assert (summary["members"], summary["upgrades"]) == (4, 4)
    assert state(members[0])[0] == "Bronze"
    assert [state(m)[0] for m in members[1:]] == ["Silver"] * 4


# Tiers set by staff -----------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("spend", "after_end"),
    [
        (None, ("Bronze", Reason.MANUAL_ENDED)),
        ("600.00", ("Silver", Reason.MANUAL_ENDED)),
        ("1300.00", ("Gold", None)),  # the value supports the tier: kept, renewed
    ],
)
def test_manual_tier_runs_until_its_end_date(spend, after_end):
    program = make_program()
    store = make_store(program)
    member = make_member(program, bound="0")
    staff = StaffUserFactory()
    today = local_today(program)
    until = today + timedelta(days=3)
    if spend:
        # Gold needs 1500 to qualify but 1200 to keep.
        past_purchase(member, store, spend, timezone.now() - timedelta(days=1))

    change = tiers.set_manual_tier(
        member=member,
        tier=tier(program, "Gold"),
        until=until,
        reason="  Compensation for a lost parcel  ",
        staff_user=staff,
    )
    assert (change.reason, change.note, change.staff_user) == (
        Reason.MANUAL,
        "Compensation for a lost parcel",
        staff,
    )
    assert (change.from_tier.name, change.to_tier.name) == ("Bronze", "Gold")
    assert member.tier.name == "Gold"
    assert state(member)[:3] == ("Gold", None, until)

    for night in (today + timedelta(days=1), until):  # kept while running, even without spend
        requalify(program, night)
        assert state(member)[:3] == ("Gold", None, until)
    assert TierChange.objects.filter(member=member).count() == 1

    requalify(program, until + timedelta(days=1))
    tier_name, reason = after_end
    member = fresh(member)
    assert (member.tier.name, member.tier_manual_until) == (tier_name, None)
    expected_review = None if tier_name == "Bronze" else tiers.add_months(until, 12)
    assert member.tier_review_on == expected_review
    reasons = [c[2] for c in changes(member)]
    assert reasons == [Reason.MANUAL] + ([reason] if reason else [])

    requalify(program, until + timedelta(days=2))  # and nothing more
    assert [c[2] for c in changes(member)] == reasons


@pytest.mark.django_db
def test_manual_tier_until_today_is_accepted():
    program = make_program()
    member = make_member(program)
    today = local_today(program)
    tiers.set_manual_tier(
        member=member,
        tier=tier(program, "Silver"),
        until=today,
        reason="VIP event",
        staff_user=StaffUserFactory(),
    )
    assert state(member)[:3] == ("Silver", None, today)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "case", ["other_program_tier", "no_tier", "blank_reason", "no_reason", "past", "no_until"]
)
def test_invalid_manual_tier_writes_nothing(case):
    program = make_program()
    other = make_program()
    member = make_member(program, "Silver", review_on=date(2099, 1, 1), bound="120")
    today = local_today(program)
    kwargs = {
        "member": member,
        "tier": tier(program, "Gold"),
        "until": today + timedelta(days=10),
        "reason": "Goodwill",
        "staff_user": StaffUserFactory(),
    }
    field, bad = {
        "other_program_tier": ("tier", tier(other, "Gold")),
        "no_tier": ("tier", None),
        "blank_reason": ("reason", "   "),
        "no_reason": ("reason", None),
        "past": ("until", today - timedelta(days=1)),
        "no_until": ("until", None),
    }[case]
    kwargs[field] = bad
    before = state(member)
    with pytest.raises(errors.InvalidManualTier) as caught:
        tiers.set_manual_tier(**kwargs)
    assert caught.value.field == field
    assert caught.value.code == "invalid_manual_tier"
    assert state(member) == before
    assert not TierChange.objects.exists()


# Member progress --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_progress_calendar_year_next_tier_by_31_december():
    program = make_program(tier_window=CALENDAR)
    store = make_store(program)
    member = make_member(program)
    past_purchase(member, store, "150.00", paris(2026, 1, 1, 0, 30))
    past_purchase(member, store, "50.25", paris(2026, 6, 1, 12), returned="0.25")
    past_purchase(member, store, "999.00", paris(2025, 12, 31, 23, 30))  # last year
    progress = member_progress(fresh(member), now=paris(2026, 6, 10, 12))
    assert progress["metric"] == "spend"
    assert progress["window"] == {"kind": CALENDAR, "start": "2026-01-01", "end": "2026-06-10"}
    assert progress["qualifying_value"] == "200.00"
    assert progress["tier"] == {
        "name": "Bronze",
        "rank": 0,
        "earn_multiplier": "1.00",
        "perks": ["Birthday gift"],
    }
    assert progress["next_tier"] == {
        "name": "Silver",
        "threshold": "500.00",
        "missing": "300.00",
        "by": "2026-12-31",
    }
    assert progress["keep"] is None  # the entry tier needs nothing to keep


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("oldest", "by"),
    [
        (paris(2025, 7, 10, 12), "2026-07-09"),
        (paris(2025, 6, 11, 0, 30), "2026-06-10"),  # the first day of today's window
        (paris(2025, 8, 31, 12), "2026-08-30"),
    ],
)
def test_progress_rolling_by_the_day_before_the_oldest_purchase_leaves(oldest, by):
    program = make_program()
    store = make_store(program)
    member = make_member(program)
    past_purchase(member, store, "100.00", oldest)
    past_purchase(member, store, "150.00", paris(2026, 1, 5, 12))
    past_purchase(member, store, "800.00", paris(2025, 6, 10, 23, 30))  # left the window
    now = paris(2026, 6, 10, 12)
    progress = member_progress(fresh(member), now=now)
    assert progress["window"] == {"kind": ROLLING, "start": "2025-06-11", "end": "2026-06-10"}
    assert progress["qualifying_value"] == "250.00"
    assert progress["next_tier"] == {
        "name": "Silver",
        "threshold": "500.00",
        "missing": "250.00",
        "by": by,
    }
    # On `by` the oldest purchase still counts; the next day it does not.
    last = date.fromisoformat(by)
    assert tiers.qualifying_value(program, member.pk, last) >= D("100.00")
    assert tiers.qualifying_value(program, member.pk, last + timedelta(days=1)) == D("150.00")


@pytest.mark.django_db
def test_progress_without_purchases_has_no_deadline():
    program = make_program()
    member = make_member(program)
    progress = member_progress(fresh(member), now=paris(2026, 6, 10, 12))
    assert progress["qualifying_value"] == "0.00"
    assert progress["next_tier"]["missing"] == "500.00"
    assert progress["next_tier"]["by"] is None


@pytest.mark.django_db
def test_progress_keep_threshold_review_date_and_perks():
    program = make_program()
    store = make_store(program)
    member = make_member(program, "Silver", review_on=date(2027, 3, 14))
    past_purchase(member, store, "300.00", paris(2026, 3, 1, 12))
    progress = member_progress(fresh(member), now=paris(2026, 6, 10, 12))
    assert progress["tier"] == {
        "name": "Silver",
        "rank": 1,
        "earn_multiplier": "1.50",
        "perks": ["Free delivery", "Early access to sales"],
    }
    assert progress["keep"] == {
        "threshold": "400.00",
        "missing": "100.00",
        "review_on": "2027-03-14",
        "manual_until": None,
    }
    assert progress["next_tier"]["name"] == "Gold"
    assert progress["next_tier"]["missing"] == "1200.00"


@pytest.mark.django_db
def test_progress_top_tier_and_manual_tier():
    program = make_program()
    store = make_store(program)
    member = make_member(program, "Gold", manual_until=date(2026, 12, 31))
    past_purchase(member, store, "1300.00", paris(2026, 3, 1, 12))
    progress = member_progress(fresh(member), now=paris(2026, 6, 10, 12))
    assert progress["next_tier"] is None
    assert progress["keep"] == {
        "threshold": "1200.00",
        "missing": "0",
        "review_on": None,
        "manual_until": "2026-12-31",
    }
    assert progress["tier"]["perks"] == ["Free delivery", "Personal shopper"]


@pytest.mark.django_db
def test_program_tiers_follow_tier_changes():
    """The tier cache is keyed by the program's updated_at, which saving a tier moves."""
    program = make_program()
    assert [t.name for t in program_tiers(program)] == ["Bronze", "Silver", "Gold"]
    TierFactory(program=program, name="Platinum", rank=3, qualify_threshold=D("5000"))
    program = Program.objects.get(pk=program.pk)
    assert [t.name for t in program_tiers(program)] == ["Bronze", "Silver", "Gold", "Platinum"]
    silver = program_tiers(program)[1]
    assert (silver.qualify_threshold, silver.retain_threshold) == (D("500.00"), D("400.00"))
    platinum = program_tiers(program)[3]
    assert platinum.retain_threshold == platinum.qualify_threshold  # no keep threshold set


@pytest.mark.django_db
def test_purchase_upgrade_ends_a_manual_tier():
    program = make_program()
    store = make_store(program)
    member = make_member(program)
    until = local_today(program) + timedelta(days=10)
    tiers.set_manual_tier(
        member=member,
        tier=tier(program, "Silver"),
        until=until,
        reason="Goodwill",
        staff_user=StaffUserFactory(),
    )
    body = buy(pos_client(store), member, "1500.00")
    assert body["tier_upgrade"] == {"from": "Silver", "to": "Gold"}
    assert body["points_earned"] == 2250  # at Silver's multiplier, the tier set by staff
    today = local_today(program)
    assert state(member) == ("Gold", tiers.add_months(today, 12), None, D("1500.00"))
    assert [c[2] for c in changes(member)] == [Reason.MANUAL, Reason.PURCHASE]
    assert find_mismatches() == []
