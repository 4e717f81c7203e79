"""Real threads racing on one PostgreSQL database for points, stock, limits and vouchers: no
voucher too many, no point lost or doubled."""

from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from config.nightly import run_job
from members.ledger import find_mismatches
from members.models import Member, PointsEntry
from rewards import errors, services
from rewards.models import Redemption, Reward
from tests.concurrency import race

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.concurrency,
    pytest.mark.django_db(transaction=True),
]


def outcomes(results):
    """Counter of result kinds: 'ok' or the exception class name."""
    return Counter(type(r).__name__ if isinstance(r, Exception) else "ok" for r in results)


def redeem_fresh(member_id, reward_id):
    """Redeem with instances loaded by the thread itself, as a request would."""
    return services.redeem(
        member=Member.objects.get(pk=member_id),
        reward=Reward.objects.get(pk=reward_id),
        channel=Redemption.Channel.PORTAL,
    )


def assert_never_negative(member):
    """The member's available balance, replayed row by row in ledger order, never went below 0
    (the rows of one member are written under its lock, so id order is commit order)."""
    running = 0
    for points in (
        PointsEntry.objects.filter(member=member, bucket=PointsEntry.Bucket.AVAILABLE)
        .order_by("pk")
        .values_list("points", flat=True)
    ):
        running += points
        assert running >= 0


def test_fifty_redemptions_of_a_balance_worth_ten_issue_exactly_ten(make_member, make_reward):
    member = make_member(1000)
    reward = make_reward(points_cost=100)

    results = race(50, lambda i: redeem_fresh(member.pk, reward.pk))

    assert outcomes(results) == {"ok": 10, "NotEnoughPoints": 40}
    assert Redemption.objects.filter(member=member).count() == 10
    assert len({r.code for r in results if isinstance(r, Redemption)}) == 10
    member.refresh_from_db()
    assert member.points_available == 0
    assert PointsEntry.objects.filter(member=member, kind=PointsEntry.Kind.REDEEM).count() == 10
    assert_never_negative(member)
    assert find_mismatches() == []


def test_fifty_members_racing_for_a_stock_of_five_get_exactly_five(make_member, make_reward):
    members = [make_member(1000) for _ in range(50)]
    reward = make_reward(points_cost=100, stock=5)

    results = race(50, lambda i: redeem_fresh(members[i].pk, reward.pk))

    assert outcomes(results) == {"ok": 5, "OutOfStock": 45}
    reward.refresh_from_db()
    assert reward.stock == 0
    assert Redemption.objects.filter(reward=reward).count() == 5
    winners = {r.member_id for r in results if isinstance(r, Redemption)}
    assert len(winners) == 5
    for m in members:
        m.refresh_from_db()
        assert m.points_available == (900 if m.pk in winners else 1000)
    assert PointsEntry.objects.filter(kind=PointsEntry.Kind.REDEEM).count() == 5
    assert find_mismatches() == []


def test_twenty_redemptions_against_a_limit_of_three_issue_exactly_three(make_member, make_reward):
    member = make_member(100_000)
    reward = make_reward(
        points_cost=100, limit_per_member=3, limit_period=Reward.LimitPeriod.LIFETIME
    )

    results = race(20, lambda i: redeem_fresh(member.pk, reward.pk))

    assert outcomes(results) == {"ok": 3, "LimitReached": 17}
    assert Redemption.objects.filter(member=member, reward=reward).count() == 3
    member.refresh_from_db()
    assert member.points_available == 100_000 - 300
    assert find_mismatches() == []


def test_twenty_tills_using_one_voucher_use_it_once(member, make_reward, program, store):
    voucher = services.redeem(member=member, reward=make_reward(), channel="portal")

    results = race(
        20,
        lambda i: services.use_voucher(
            program=program, code=voucher.code, store=store, receipt_id=f"T-{i}"
        ),
    )

    assert outcomes(results) == {"ok": 1, "VoucherAlreadyUsed": 19}
    (winner,) = [i for i, r in enumerate(results) if not isinstance(r, Exception)]
    assert results[winner][1] is True
    voucher.refresh_from_db()
    assert voucher.status == Redemption.Status.USED
    assert voucher.used_receipt_id == f"T-{winner}"
    assert find_mismatches() == []


def test_one_receipt_posted_twenty_times_uses_the_voucher_once(member, make_reward, program, store):
    voucher = services.redeem(member=member, reward=make_reward(), channel="portal")

    results = race(
        20,
        lambda i: services.use_voucher(
            program=program, code=voucher.code, store=store, receipt_id="SAME"
        ),
    )

    assert outcomes(results) == {"ok": 20}
    assert sorted(created for _v, created in results) == [False] * 19 + [True]
    assert len({v.used_at for v, _created in results}) == 1
    assert find_mismatches() == []


def test_cancel_racing_use_one_wins_per_voucher(make_member, make_reward, program, store, staff):
    member = make_member(10_000)
    reward = make_reward(points_cost=100, stock=20)
    vouchers = [services.redeem(member=member, reward=reward, channel="portal") for _ in range(10)]
    member.refresh_from_db()
    balance_before = member.points_available  # 10_000 - 1_000

    def work(i):
        voucher = Redemption.objects.get(pk=vouchers[i // 2].pk)
        if i % 2 == 0:
            return "cancel", services.cancel(redemption=voucher, reason="race", staff_user=staff)
        return "use", services.use_voucher(
            program=program, code=voucher.code, store=store, receipt_id=f"T-{i}"
        )

    results = race(20, work)

    cancelled = used = 0
    for n, voucher in enumerate(vouchers):
        cancel_result, use_result = results[2 * n], results[2 * n + 1]
        voucher.refresh_from_db()
        if voucher.status == Redemption.Status.CANCELLED:
            cancelled += 1
            assert cancel_result[0] == "cancel"
            assert isinstance(use_result, errors.VoucherCancelled)
            assert PointsEntry.objects.filter(txn=voucher.refund_txn).count() == 1
        else:
            used += 1
            assert voucher.status == Redemption.Status.USED
            assert use_result[0] == "use"
            assert use_result[1][1] is True
            assert isinstance(cancel_result, errors.CannotCancel)
            assert voucher.refund_txn is None
    assert cancelled + used == 10
    member.refresh_from_db()
    reward.refresh_from_db()
    assert member.points_available == balance_before + 100 * cancelled
    assert reward.stock == 20 - 10 + cancelled
    assert PointsEntry.objects.filter(kind=PointsEntry.Kind.REFUND).count() == cancelled
    assert find_mismatches() == []


def test_cancel_racing_the_expiry_job_refunds_once(make_member, make_reward, program, staff):
    """A till clock behind the server's: staff cancel a voucher the nightly job is expiring, with
    the refund policy on. Each voucher is refunded exactly once, by one or the other."""
    program.refund_expired_vouchers = True
    program.save()
    now = timezone.now()
    members = [make_member(1000) for _ in range(10)]
    reward = make_reward(points_cost=100, stock=50, voucher_valid_days=1)
    vouchers = [
        services.redeem(
            member=m, reward=reward, channel="portal", now=now - timedelta(days=1, minutes=1)
        )
        for m in members
    ]

    def work(i):
        if i == 10:
            return run_job("expire_vouchers", now=now, programs=[program], batch_size=2)
        return services.cancel(
            redemption=Redemption.objects.get(pk=vouchers[i].pk),
            reason="race",
            staff_user=staff,
            now=now - timedelta(days=1),  # before the expiry, by the canceller's clock
        )

    results = race(11, work)

    assert not isinstance(results[10], Exception), results[10]
    expired_by_job = results[10][program.slug]["vouchers"]
    statuses = Counter(
        Redemption.objects.filter(pk__in=[v.pk for v in vouchers]).values_list("status", flat=True)
    )
    assert statuses[Redemption.Status.EXPIRED] == expired_by_job
    assert statuses[Redemption.Status.CANCELLED] + expired_by_job == 10
    for result in results[:10]:
        if isinstance(result, Exception):
            assert isinstance(result, errors.CannotCancel)
    # Every voucher refunded exactly once, whoever closed it.
    assert PointsEntry.objects.filter(kind=PointsEntry.Kind.REFUND).count() == 10
    for m in members:
        m.refresh_from_db()
        assert m.points_available == 1000
    reward.refresh_from_db()
    assert reward.stock == 50
    assert find_mismatches() == []


def test_one_receipt_posted_twenty_times_at_the_till_answers_the_same_voucher(
    member, make_reward, program, store
):
    """The replays that waited for the first till's lock answer the voucher as used, with the
    store that used it (the store is read after the lock, not from before the wait)."""
    from rest_framework.test import APIClient

    from tests.factories import make_api_key

    voucher = services.redeem(member=member, reward=make_reward(), channel="portal")
    key = make_api_key(store)

    def post(i):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
        return client.post(
            f"/api/v1/vouchers/{voucher.code}/use/", {"receipt_id": "SAME"}, format="json"
        )

    responses = race(20, post)

    assert [r.status_code for r in responses] == [200] * 20, [
        r.content for r in responses if r.status_code != 200
    ]
    bodies = [r.json() for r in responses]
    assert {b["used_store"] for b in bodies} == {store.slug}
    assert {b["status"] for b in bodies} == {"used"}
    assert len({b["used_at"] for b in bodies}) == 1
    assert find_mismatches() == []
