"""The nightly voucher job: vouchers past their date expire, with their points and stock back
when the program refunds expired vouchers; idempotent, dry-runnable, ledger exact."""

from datetime import timedelta

import pytest
from django.utils import timezone

from config.nightly import NIGHTLY_CHAIN, NIGHTLY_ORDER, run_job
from members.ledger import find_mismatches
from members.models import PointsEntry
from rewards import errors, services
from rewards.jobs import expire_vouchers
from rewards.models import Redemption
from tests.factories import ProgramFactory, TierFactory, enrol

pytestmark = pytest.mark.django_db

ISSUED, USED, EXPIRED, CANCELLED = (
    Redemption.Status.ISSUED,
    Redemption.Status.USED,
    Redemption.Status.EXPIRED,
    Redemption.Status.CANCELLED,
)


@pytest.fixture
def now():
    return timezone.now().replace(microsecond=0)


@pytest.fixture
def night(program, make_member, make_reward, store, now):
    """Three members; vouchers issued 10 days ago, valid 10 days (due now, at the boundary) or
    30 days (not due), one used and one cancelled."""
    issued = now - timedelta(days=10)
    short = make_reward(points_cost=100, stock=10, voucher_valid_days=10)
    unlimited = make_reward(points_cost=40, stock=None, voucher_valid_days=5)
    long = make_reward(points_cost=70, stock=10, voucher_valid_days=30)
    alice, bob, carol = make_member(1000), make_member(1000), make_member(1000)

    def redeem(member, reward):
        return services.redeem(member=member, reward=reward, channel="portal", now=issued)

    due = [redeem(alice, short), redeem(alice, unlimited), redeem(bob, short)]
    not_due = redeem(carol, long)
    used = redeem(carol, short)
    services.use_voucher(program=program, code=used.code, store=store, receipt_id="T-1", now=issued)
    cancelled = redeem(bob, short)
    services.cancel(redemption=cancelled, reason="mistake", now=issued)
    for r in (*due, not_due, used, cancelled):
        r.refresh_from_db()
    return {
        "due": due,
        "not_due": not_due,
        "used": used,
        "cancelled": cancelled,
        "short": short,
        "unlimited": unlimited,
        "long": long,
        "members": (alice, bob, carol),
    }


def statuses(night):
    return {
        name: Redemption.objects.get(pk=night[name].pk).status
        for name in ("not_due", "used", "cancelled")
    } | {f"due{i}": Redemption.objects.get(pk=r.pk).status for i, r in enumerate(night["due"])}


def balances(night):
    out = []
    for m in night["members"]:
        m.refresh_from_db()
        out.append(m.points_available)
    return out


def stocks(night):
    out = []
    for name in ("short", "unlimited", "long"):
        night[name].refresh_from_db()
        out.append(night[name].stock)
    return out


def test_the_job_runs_in_the_nightly_chain_after_the_release_of_points():
    assert dict(NIGHTLY_CHAIN)["expire_vouchers"] is expire_vouchers
    i = NIGHTLY_ORDER.index("expire_vouchers")
    assert NIGHTLY_ORDER[i - 1] == "release_pending_points"
    assert NIGHTLY_ORDER.count("expire_vouchers") == 1


def test_vouchers_past_their_date_expire_without_refund(program, night, now):
    assert program.refund_expired_vouchers is False
    before_balances, before_stocks = balances(night), stocks(night)
    entries = PointsEntry.objects.count()

    summary = run_job("expire_vouchers", now=now, programs=[program])

    assert summary[program.slug]["vouchers"] == 3
    assert summary[program.slug]["points_refunded"] == 0
    assert statuses(night) == {
        "not_due": ISSUED,
        "used": USED,
        "cancelled": CANCELLED,
        "due0": EXPIRED,
        "due1": EXPIRED,
        "due2": EXPIRED,
    }
    for r in night["due"]:
        r.refresh_from_db()
        assert r.closed_at == now
        assert r.refund_txn is None
    assert PointsEntry.objects.count() == entries
    assert balances(night) == before_balances
    assert stocks(night) == before_stocks
    assert find_mismatches() == []


def test_with_the_refund_policy_points_and_stock_come_back(program, night, now):
    program.refund_expired_vouchers = True
    program.save()
    before_balances, before_stocks = balances(night), stocks(night)
    # alice: 100 + 40 back; bob: 100 back; carol: nothing.
    summary = run_job("expire_vouchers", now=now, programs=[program])

    assert summary[program.slug]["vouchers"] == 3
    assert summary[program.slug]["points_refunded"] == 240
    assert balances(night) == [
        before_balances[0] + 140,
        before_balances[1] + 100,
        before_balances[2],
    ]
    # short: two due vouchers come back; unlimited stays unlimited; long: not due.
    assert stocks(night) == [before_stocks[0] + 2, None, before_stocks[2]]
    for r in night["due"]:
        r.refresh_from_db()
        assert r.status == EXPIRED
        assert r.closed_at == now
        refund = PointsEntry.objects.get(txn=r.refund_txn)
        assert refund.kind == PointsEntry.Kind.REFUND
        assert refund.bucket == PointsEntry.Bucket.AVAILABLE
        assert refund.points == r.points_spent
        assert refund.member_id == r.member_id
        assert refund.effective_at == now
        assert services.normalize_code(r.code) in services.normalize_code(refund.reason)
    assert PointsEntry.objects.filter(kind=PointsEntry.Kind.REFUND).count() == 3 + 1  # + cancel
    assert statuses(night)["not_due"] == ISSUED
    assert find_mismatches() == []


@pytest.mark.parametrize("refund", [False, True])
def test_a_second_run_the_same_night_changes_nothing(refund, program, night, now, snapshot):
    program.refund_expired_vouchers = refund
    program.save()
    run_job("expire_vouchers", now=now, programs=[program])
    before = snapshot()
    summary = run_job("expire_vouchers", now=now + timedelta(hours=1), programs=[program])
    assert summary[program.slug]["vouchers"] == 0
    assert summary[program.slug]["points_refunded"] == 0
    assert snapshot() == before
    assert find_mismatches() == []


@pytest.mark.parametrize("refund", [False, True])
def test_a_dry_run_writes_nothing(refund, program, night, now, snapshot):
    program.refund_expired_vouchers = refund
    program.save()
    before = snapshot()
    summary = run_job("expire_vouchers", now=now, programs=[program], dry_run=True)
    assert summary[program.slug]["vouchers"] == 3  # what it would do
    assert summary[program.slug]["points_refunded"] == (240 if refund else 0)
    assert snapshot() == before
    # and the real run afterwards still does it all
    summary = run_job("expire_vouchers", now=now, programs=[program])
    assert summary[program.slug]["vouchers"] == 3
    assert find_mismatches() == []


def test_small_batches_expire_every_member(program, night, now):
    program.refund_expired_vouchers = True
    program.save()
    summary = run_job("expire_vouchers", now=now, programs=[program], batch_size=1)
    assert summary[program.slug]["vouchers"] == 3
    assert summary[program.slug]["batches"] == 2  # alice, then bob
    assert Redemption.objects.filter(status=EXPIRED).count() == 3
    assert find_mismatches() == []


def test_a_voucher_just_before_its_date_is_left_alone(program, night, now):
    summary = run_job("expire_vouchers", now=now - timedelta(seconds=1), programs=[program])
    assert summary[program.slug]["vouchers"] == 1  # only the 5-day voucher, due 5 days ago
    assert statuses(night) | {"due1": None} == {
        "not_due": ISSUED,
        "used": USED,
        "cancelled": CANCELLED,
        "due0": ISSUED,
        "due1": None,
        "due2": ISSUED,
    }
    assert statuses(night)["due1"] == EXPIRED


def test_only_the_programs_given_are_touched(program, night, now, make_reward):
    other = ProgramFactory(refund_expired_vouchers=True)
    TierFactory(program=other, rank=0)
    outsider = enrol(other, email="other@example.fr")
    from members import services as member_services

    member_services.adjust_points(member=outsider, points=500, reason="x", staff_user=None)
    foreign = services.redeem(
        member=outsider,
        reward=make_reward(program=other, voucher_valid_days=1),
        channel="portal",
        now=now - timedelta(days=3),
    )
    run_job("expire_vouchers", now=now, programs=[program])
    foreign.refresh_from_db()
    assert foreign.status == ISSUED
    run_job("expire_vouchers", now=now, programs=[other])
    foreign.refresh_from_db()
    assert foreign.status == EXPIRED
    outsider.refresh_from_db()
    assert outsider.points_available == 500
    assert find_mismatches() == []


def test_an_expired_voucher_can_be_neither_used_nor_cancelled(program, night, now, store):
    run_job("expire_vouchers", now=now, programs=[program])
    voucher = night["due"][0]
    with pytest.raises(errors.VoucherExpired):
        services.use_voucher(
            program=program,
            code=voucher.code,
            store=store,
            receipt_id="T-9",
            now=now - timedelta(days=1),  # even with a till clock behind
        )
    with pytest.raises(errors.CannotCancel):
        services.cancel(redemption=voucher, reason="late", now=now - timedelta(days=1))
