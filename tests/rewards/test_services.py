"""The rewards services: redeem, cancel and use_voucher, every rule and error, with nothing written
when an action is refused."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from members import errors as member_errors
from members import services as member_services
from members.ledger import find_mismatches
from members.models import Member, PointsEntry
from rewards import errors, services
from rewards.models import Redemption, Reward
from tests.factories import ProgramFactory, StoreFactory, TierFactory, enrol

pytestmark = pytest.mark.django_db

STAFF = Redemption.Channel.STAFF
POS = Redemption.Channel.POS


def utc(*args):
    return datetime(*args, tzinfo=UTC)


def redeem(member, reward, **kwargs):
    kwargs.setdefault("channel", STAFF)
    return services.redeem(member=member, reward=reward, **kwargs)


# Codes ------------------------------------------------------------------------------------------


def test_new_codes_are_twelve_characters_of_the_unambiguous_alphabet():
    codes = {services.new_code() for _ in range(2000)}
    assert len(codes) == 2000
    for code in codes:
        assert len(code) == 12
        assert set(code) <= set(services.CODE_ALPHABET)
    assert not set("01OIL") & set(services.CODE_ALPHABET)


def test_codes_are_formatted_in_groups_of_four_and_normalized_back():
    assert services.format_code("ABCD2345WXYZ") == "ABCD-2345-WXYZ"
    assert services.normalize_code("abcd-2345 wxyz") == "ABCD2345WXYZ"
    assert services.normalize_code(" ab cd\t23-45-wxyz ") == "ABCD2345WXYZ"
    assert services.normalize_code("") == ""
    assert services.normalize_code(None) == ""


# period_start -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("period", "now", "start"),
    [
        # 2026-03-08 is the first day of daylight saving time in New York (UTC-5 before, -4 after).
        ("day", utc(2026, 3, 8, 12), utc(2026, 3, 8, 5)),
        ("day", utc(2026, 3, 10, 3), utc(2026, 3, 9, 4)),  # 23:00 on the 9th, local
        ("week", utc(2026, 3, 8, 12), utc(2026, 3, 2, 5)),  # a Sunday: the week began Monday
        ("week", utc(2026, 3, 10, 12), utc(2026, 3, 9, 4)),
        ("month", utc(2026, 3, 10, 12), utc(2026, 3, 1, 5)),  # across the change of offset
        ("month", utc(2026, 4, 1, 3), utc(2026, 3, 1, 5)),  # still 31 March, local
        ("year", utc(2026, 1, 1, 3), utc(2025, 1, 1, 5)),  # still 31 December, local
        ("year", utc(2026, 7, 1, 12), utc(2026, 1, 1, 5)),
        ("lifetime", utc(2026, 7, 1, 12), None),
    ],
)
def test_period_start_is_local_midnight_in_the_program_time_zone(period, now, start):
    program = ProgramFactory(time_zone="America/New_York")
    assert services.period_start(program, period, now) == start


# Redeem -----------------------------------------------------------------------------------------


def test_redeem_debits_the_ledger_takes_stock_and_issues_a_voucher(
    member, make_reward, store, staff
):
    reward = make_reward(
        points_cost=300, cost_amount=Decimal("7.50"), stock=4, voucher_valid_days=30
    )
    now = timezone.now().replace(microsecond=0)

    redemption = redeem(member, reward, channel=POS, store=store, staff_user=staff, now=now)

    assert member.points_available == 700  # the caller's instance follows
    member.refresh_from_db()
    reward.refresh_from_db()
    assert member.points_available == 700
    assert member.last_activity_at == now
    assert reward.stock == 3
    redemption.refresh_from_db()
    assert redemption.program_id == member.program_id
    assert redemption.member_id == member.pk
    assert redemption.reward_id == reward.pk
    assert redemption.status == Redemption.Status.ISSUED
    assert redemption.channel == POS
    assert redemption.points_spent == 300
    assert redemption.cost_amount == Decimal("7.50")
    assert redemption.issued_at == now
    assert redemption.expires_at == now + timedelta(days=30)
    assert redemption.issued_store == store
    assert redemption.issued_by == staff
    assert len(redemption.code) == 12
    assert set(redemption.code) <= set(services.CODE_ALPHABET)

    entry = PointsEntry.objects.get(member=member, kind=PointsEntry.Kind.REDEEM)
    assert entry.bucket == PointsEntry.Bucket.AVAILABLE
    assert entry.points == -300
    assert entry.txn == redemption.debit_txn
    assert services.format_code(redemption.code) in entry.reason
    assert entry.store == store
    assert entry.staff_user == staff
    assert entry.effective_at == now
    assert PointsEntry.objects.filter(txn=redemption.debit_txn).count() == 1
    assert find_mismatches() == []


def test_cost_amount_is_a_snapshot_of_the_reward_at_redemption(member, make_reward):
    reward = make_reward(cost_amount=Decimal("4.00"))
    redemption = redeem(member, reward)
    Reward.objects.filter(pk=reward.pk).update(cost_amount=Decimal("9.99"), points_cost=999)
    redemption.refresh_from_db()
    assert redemption.cost_amount == Decimal("4.00")
    assert redemption.points_spent == 100


def test_unlimited_stock_stays_unlimited(member, make_reward):
    reward = make_reward(stock=None)
    redeem(member, reward)
    reward.refresh_from_db()
    assert reward.stock is None


def test_each_redemption_gets_its_own_code(make_member, make_reward):
    member = make_member(2000)
    reward = make_reward(points_cost=10)
    codes = [redeem(member, reward).code for _ in range(30)]
    assert len(set(codes)) == 30
    member.refresh_from_db()
    assert member.points_available == 2000 - 300
    assert find_mismatches() == []


def test_the_whole_balance_can_be_spent(member, make_reward):
    redeem(member, make_reward(points_cost=1000))
    member.refresh_from_db()
    assert member.points_available == 0
    assert find_mismatches() == []


def test_the_balance_is_read_under_the_lock_not_from_the_callers_instance(member, make_reward):
    stale = Member.objects.get(pk=member.pk)
    stale.points_available = 0  # what a stale page would show
    redeem(stale, make_reward(points_cost=600))
    member.refresh_from_db()
    assert member.points_available == 400


def test_the_last_unit_of_stock_can_be_redeemed(member, make_reward):
    reward = make_reward(stock=1)
    redeem(member, reward)
    reward.refresh_from_db()
    assert reward.stock == 0


def test_a_reward_restricted_to_tiers_is_open_to_those_tiers(member, make_reward, tiers):
    bronze, gold = tiers
    reward = make_reward(tiers=[gold])
    Member.objects.filter(pk=member.pk).update(tier=gold)
    redeem(member, reward)
    assert Redemption.objects.filter(member=member).count() == 1
    # and a reward open to several tiers, to every one of them
    redeem(member, make_reward(tiers=[bronze, gold]))


def test_validity_bounds_are_start_inclusive(member, make_reward):
    now = timezone.now()
    reward = make_reward(valid_from=now, valid_until=now + timedelta(days=1))
    redeem(member, reward, now=now)
    assert Redemption.objects.filter(member=member).count() == 1


def _setup_error(case, member, make_reward, tiers, program, now):
    """Prepare `case`; return (reward, member, expected exception)."""
    bronze, gold = tiers
    if case == "not_enough_points":
        return make_reward(points_cost=1001), member, errors.NotEnoughPoints
    if case == "negative_balance":
        member_services.adjust_points(
            member=member, points=-1500, reason="correction", staff_user=None
        )
        return make_reward(points_cost=1), member, errors.NotEnoughPoints
    if case == "out_of_stock":
        return make_reward(stock=0), member, errors.OutOfStock
    if case == "tier_not_allowed":
        return make_reward(tiers=[gold]), member, errors.TierNotAllowed
    if case == "tier_none_but_restricted":
        Member.objects.filter(pk=member.pk).update(tier=None)
        return make_reward(tiers=[bronze]), member, errors.TierNotAllowed
    if case == "inactive":
        return make_reward(is_active=False), member, errors.RewardNotAvailable
    if case == "not_yet_valid":
        return make_reward(valid_from=now + timedelta(seconds=1)), member, errors.RewardNotAvailable
    if case == "no_longer_valid":
        reward = make_reward(valid_from=now - timedelta(days=2), valid_until=now)
        return reward, member, errors.RewardNotAvailable
    if case == "other_program":
        other = ProgramFactory()
        reward = make_reward(program=other)
        return reward, member, errors.RewardNotFound
    if case == "suspended":
        Member.objects.filter(pk=member.pk).update(status=Member.Status.SUSPENDED)
        return make_reward(), member, member_errors.MemberNotActive
    if case == "closed":
        Member.objects.filter(pk=member.pk).update(status=Member.Status.CLOSED)
        return make_reward(), member, member_errors.MemberNotActive
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "not_enough_points",
        "negative_balance",
        "out_of_stock",
        "tier_not_allowed",
        "tier_none_but_restricted",
        "inactive",
        "not_yet_valid",
        "no_longer_valid",
        "other_program",
        "suspended",
        "closed",
    ],
)
def test_redeem_errors_write_nothing(
    case, member, make_reward, tiers, program, store, staff, snapshot
):
    now = timezone.now()
    reward, member, expected = _setup_error(case, member, make_reward, tiers, program, now)
    before = snapshot()
    with pytest.raises(expected):
        redeem(member, reward, store=store, staff_user=staff, now=now)
    assert snapshot() == before
    assert not Redemption.objects.exists()
    assert find_mismatches() == []


def test_not_enough_points_says_how_many(member, make_reward):
    with pytest.raises(errors.NotEnoughPoints) as exc:
        redeem(member, make_reward(points_cost=1200))
    assert "1200" in exc.value.detail
    assert "1000" in exc.value.detail
    assert exc.value.code == "not_enough_points"


def test_the_lifetime_limit_counts_every_redemption_but_cancelled_ones(
    make_member, make_reward, snapshot
):
    member = make_member(5000)
    reward = make_reward(limit_per_member=2, limit_period=Reward.LimitPeriod.LIFETIME)
    first = redeem(member, reward)
    redeem(member, reward)
    before = snapshot()
    with pytest.raises(errors.LimitReached):
        redeem(member, reward)
    assert snapshot() == before

    services.cancel(redemption=first, reason="changed their mind")
    third = redeem(member, reward)  # the cancelled one no longer counts
    with pytest.raises(errors.LimitReached):
        redeem(member, reward)
    # A used voucher still counts.
    services.use_voucher(
        program=member.program,
        code=third.code,
        store=StoreFactory(program=member.program),
        receipt_id="R1",
    )
    with pytest.raises(errors.LimitReached):
        redeem(member, reward)
    # The limit is per member and per reward.
    redeem(make_member(500), reward)
    redeem(member, make_reward(limit_per_member=2))
    assert find_mismatches() == []


def test_an_expired_voucher_still_counts_in_the_limit(make_member, make_reward, program):
    from config.nightly import run_job

    member = make_member(5000)
    reward = make_reward(limit_per_member=1, voucher_valid_days=1)
    now = timezone.now()
    redeem(member, reward, now=now - timedelta(days=3))
    run_job("expire_vouchers", now=now, programs=[program])
    assert Redemption.objects.get().status == Redemption.Status.EXPIRED
    with pytest.raises(errors.LimitReached):
        redeem(member, reward, now=now)


# Paris is UTC+1 in January and February.
@pytest.mark.parametrize(
    ("period", "first", "refused", "allowed"),
    [
        # 23:30 on Saturday 10 January in Paris; 00:30 on the 11th is another day (but the same
        # UTC day), while 10:00 UTC on the 10th is the same local day.
        ("day", utc(2026, 1, 10, 22, 30), utc(2026, 1, 10, 10), utc(2026, 1, 10, 23, 30)),
        # 00:30 on the 11th in Paris (still the 10th in UTC): 10:00 on the 11th is the same day.
        ("day", utc(2026, 1, 10, 23, 30), utc(2026, 1, 11, 10), utc(2026, 1, 11, 23, 0)),
        # Sunday 23:30 local ends a week; Monday 00:30 local (still Sunday in UTC) starts one.
        ("week", utc(2026, 1, 11, 22, 30), utc(2026, 1, 5, 8), utc(2026, 1, 11, 23, 30)),
        ("week", utc(2026, 1, 11, 23, 30), utc(2026, 1, 17, 22, 59), utc(2026, 1, 18, 23, 0)),
        # 31 January 23:30 local, then 1 February 00:30 local (still 31 January in UTC).
        ("month", utc(2026, 1, 31, 22, 30), utc(2026, 1, 1, 8), utc(2026, 1, 31, 23, 30)),
        ("month", utc(2026, 1, 31, 23, 30), utc(2026, 2, 28, 22, 59), utc(2026, 2, 28, 23, 0)),
        # New Year's Eve 23:30 local, then 00:30 on 1 January local (still 2025 in UTC).
        ("year", utc(2025, 12, 31, 22, 30), utc(2025, 1, 1, 8), utc(2025, 12, 31, 23, 30)),
        ("year", utc(2025, 12, 31, 23, 30), utc(2026, 12, 31, 22, 59), utc(2026, 12, 31, 23, 0)),
    ],
)
def test_period_limits_start_in_the_program_time_zone(
    period, first, refused, allowed, make_member, make_reward, snapshot
):
    member = make_member(5000)
    reward = make_reward(limit_per_member=1, limit_period=period)
    redeem(member, reward, now=first)
    before = snapshot()
    with pytest.raises(errors.LimitReached):
        redeem(member, reward, now=refused)
    assert snapshot() == before
    redeem(member, reward, now=allowed)
    assert Redemption.objects.filter(member=member).count() == 2


def test_a_period_limit_ignores_cancelled_redemptions(make_member, make_reward):
    member = make_member(5000)
    reward = make_reward(limit_per_member=1, limit_period=Reward.LimitPeriod.DAY)
    now = timezone.now()
    first = redeem(member, reward, now=now)
    services.cancel(redemption=first, reason="mistake", now=now)
    redeem(member, reward, now=now)
    with pytest.raises(errors.LimitReached):
        redeem(member, reward, now=now)


def test_availability_error_is_what_a_catalogue_shows_locked(member, make_reward, tiers):
    _bronze, gold = tiers
    now = timezone.now()
    assert services.availability_error(make_reward(), member, now) is None
    # Balance, stock and limits are not its business.
    assert services.availability_error(make_reward(points_cost=99999, stock=0), member, now) is None
    restricted = make_reward(tiers=[gold])
    assert isinstance(services.availability_error(restricted, member, now), errors.TierNotAllowed)
    assert services.availability_error(restricted, member, now, tier_ids=set()) is None


# Cancel -----------------------------------------------------------------------------------------


def test_cancel_refunds_the_points_and_gives_the_stock_back(member, make_reward, staff):
    reward = make_reward(points_cost=250, stock=2)
    redemption = redeem(member, reward)
    now = timezone.now()

    cancelled = services.cancel(
        redemption=redemption, reason="  wrong reward  ", staff_user=staff, now=now
    )

    assert cancelled is redemption
    assert cancelled.status == Redemption.Status.CANCELLED
    assert cancelled.cancel_reason == "wrong reward"
    assert cancelled.cancelled_by == staff
    assert cancelled.closed_at == now
    member.refresh_from_db()
    reward.refresh_from_db()
    assert member.points_available == 1000
    assert reward.stock == 2
    refund = PointsEntry.objects.get(member=member, kind=PointsEntry.Kind.REFUND)
    assert refund.bucket == PointsEntry.Bucket.AVAILABLE
    assert refund.points == 250
    assert refund.txn == cancelled.refund_txn
    assert refund.txn != cancelled.debit_txn
    assert services.format_code(redemption.code) in refund.reason
    assert "wrong reward" in refund.reason
    assert refund.staff_user == staff
    assert find_mismatches() == []


def test_cancel_leaves_unlimited_stock_unlimited(member, make_reward):
    reward = make_reward(stock=None)
    services.cancel(redemption=redeem(member, reward), reason="test")
    reward.refresh_from_db()
    assert reward.stock is None


@pytest.mark.parametrize("reason", ["", "   ", None])
def test_cancel_needs_a_reason(reason, member, make_reward, snapshot):
    redemption = redeem(member, make_reward(stock=3))
    before = snapshot()
    with pytest.raises(errors.CannotCancel) as exc:
        services.cancel(redemption=redemption, reason=reason)
    assert exc.value.field == "reason"
    assert snapshot() == before


@pytest.mark.parametrize("state", ["used", "expired", "past_expiry", "cancelled"])
def test_only_an_unused_valid_voucher_can_be_cancelled(
    state, member, make_reward, store, program, snapshot
):
    from config.nightly import run_job

    reward = make_reward(stock=3, voucher_valid_days=5)
    now = timezone.now()
    redemption = redeem(member, reward, now=now - timedelta(days=10))
    if state == "used":
        Redemption.objects.filter(pk=redemption.pk).update(expires_at=now + timedelta(days=1))
        services.use_voucher(program=program, code=redemption.code, store=store, receipt_id="R1")
    elif state == "expired":
        run_job("expire_vouchers", now=now, programs=[program])
    elif state == "cancelled":
        Redemption.objects.filter(pk=redemption.pk).update(expires_at=now + timedelta(days=1))
        services.cancel(redemption=redemption, reason="first time")
    # past_expiry: past its date, the nightly job has not run yet.
    before = snapshot()
    with pytest.raises(errors.CannotCancel):
        services.cancel(redemption=redemption, reason="again", now=now)
    assert snapshot() == before
    assert find_mismatches() == []


def test_cancel_reads_the_status_under_the_lock(member, make_reward, program, store):
    redemption = redeem(member, make_reward())
    stale = Redemption.objects.get(pk=redemption.pk)
    services.use_voucher(program=program, code=redemption.code, store=store, receipt_id="R1")
    with pytest.raises(errors.CannotCancel):
        services.cancel(redemption=stale, reason="too late")
    assert not PointsEntry.objects.filter(kind=PointsEntry.Kind.REFUND).exists()


# Consume ----------------------------------------------------------------------------------------


@pytest.fixture
def voucher(member, make_reward):
    return redeem(member, make_reward(stock=5))


def test_use_voucher_uses_the_voucher_once(voucher, program, store, snapshot):
    entries = PointsEntry.objects.count()
    now = timezone.now()
    used, created = services.use_voucher(
        program=program, code=voucher.code, store=store, receipt_id="T-1", now=now
    )
    assert created is True
    assert used.pk == voucher.pk
    assert used.status == Redemption.Status.USED
    voucher.refresh_from_db()
    assert voucher.status == Redemption.Status.USED
    assert voucher.used_at == now
    assert voucher.used_store == store
    assert voucher.used_receipt_id == "T-1"
    assert PointsEntry.objects.count() == entries  # using a voucher moves no points

    # The same store and receipt again: a replay, nothing changes.
    before = snapshot()
    again, created = services.use_voucher(
        program=program,
        code=voucher.code,
        store=store,
        receipt_id="T-1",
        now=now + timedelta(minutes=5),
    )
    assert created is False
    assert again.pk == voucher.pk
    assert again.used_at == now
    assert snapshot() == before
    assert find_mismatches() == []


def test_use_voucher_on_another_receipt_or_store_is_already_used(voucher, program, store, snapshot):
    services.use_voucher(program=program, code=voucher.code, store=store, receipt_id="T-1")
    before = snapshot()
    with pytest.raises(errors.VoucherAlreadyUsed):
        services.use_voucher(program=program, code=voucher.code, store=store, receipt_id="T-2")
    other_store = StoreFactory(program=program)
    with pytest.raises(errors.VoucherAlreadyUsed):
        services.use_voucher(
            program=program, code=voucher.code, store=other_store, receipt_id="T-1"
        )
    assert snapshot() == before
    voucher.refresh_from_db()
    assert (voucher.used_store_id, voucher.used_receipt_id) == (store.pk, "T-1")


@pytest.mark.parametrize(
    "typed",
    [
        lambda c: c.lower(),
        lambda c: services.format_code(c),
        lambda c: services.format_code(c).lower(),
        lambda c: " ".join(c[i : i + 4] for i in range(0, 12, 4)),
        lambda c: f"  {c[:6]} - {c[6:]}  ",
    ],
    ids=["lowercase", "dashes", "dashes-lowercase", "spaces", "mixed"],
)
def test_use_voucher_accepts_the_code_as_typed(typed, voucher, program, store):
    used, created = services.use_voucher(
        program=program, code=typed(voucher.code), store=store, receipt_id="T-1"
    )
    assert created
    assert used.pk == voucher.pk
    assert services.find_voucher(program, typed(voucher.code)).pk == voucher.pk


def test_unknown_code_or_code_of_another_program_is_not_found(voucher, program, store, snapshot):
    other_program = ProgramFactory()
    other_store = StoreFactory(program=other_program)
    before = snapshot()
    with pytest.raises(errors.VoucherNotFound):
        services.use_voucher(program=program, code="ZZZZ-ZZZZ-ZZZZ", store=store, receipt_id="T-1")
    with pytest.raises(errors.VoucherNotFound):
        services.use_voucher(program=program, code="", store=store, receipt_id="T-1")
    with pytest.raises(errors.VoucherNotFound):
        services.use_voucher(
            program=other_program, code=voucher.code, store=other_store, receipt_id="T-1"
        )
    with pytest.raises(errors.VoucherNotFound):
        services.find_voucher(other_program, voucher.code)
    with pytest.raises(errors.VoucherNotFound):
        services.find_voucher(program, "nothing")
    assert snapshot() == before


def test_a_voucher_past_its_date_is_expired_before_the_nightly_job(
    voucher, program, store, snapshot
):
    before = snapshot()
    with pytest.raises(errors.VoucherExpired):
        services.use_voucher(
            program=program,
            code=voucher.code,
            store=store,
            receipt_id="T-1",
            now=voucher.expires_at,  # the expiry instant is already too late
        )
    assert snapshot() == before
    assert Redemption.objects.get().status == Redemption.Status.ISSUED
    # A second before, it is still valid.
    _used, created = services.use_voucher(
        program=program,
        code=voucher.code,
        store=store,
        receipt_id="T-1",
        now=voucher.expires_at - timedelta(seconds=1),
    )
    assert created


def test_an_expired_voucher_cannot_be_used(voucher, program, store, snapshot):
    # Marked expired (as the job does) even if the date were later: the status wins.
    Redemption.objects.filter(pk=voucher.pk).update(
        status=Redemption.Status.EXPIRED, closed_at=timezone.now()
    )
    before = snapshot()
    with pytest.raises(errors.VoucherExpired):
        services.use_voucher(program=program, code=voucher.code, store=store, receipt_id="T-1")
    assert snapshot() == before


def test_a_cancelled_voucher_cannot_be_used(voucher, program, store, snapshot):
    services.cancel(redemption=voucher, reason="returned")
    before = snapshot()
    with pytest.raises(errors.VoucherCancelled):
        services.use_voucher(program=program, code=voucher.code, store=store, receipt_id="T-1")
    assert snapshot() == before


def test_use_voucher_does_not_need_an_active_member(voucher, program, store):
    """A voucher issued stays usable if the member is suspended afterwards (documents the current
    behaviour: use_voucher checks the voucher, not the member)."""
    Member.objects.filter(pk=voucher.member_id).update(status=Member.Status.SUSPENDED)
    _used, created = services.use_voucher(
        program=program, code=voucher.code, store=store, receipt_id="T-1"
    )
    assert created


def test_members_of_two_programs_do_not_mix(make_reward, make_member):
    other = ProgramFactory()
    TierFactory(program=other, rank=0)
    outsider = enrol(other, email="out@example.fr")
    member_services.adjust_points(member=outsider, points=500, reason="x", staff_user=None)
    with pytest.raises(errors.RewardNotFound):
        redeem(outsider, make_reward())
    assert find_mismatches() == []
