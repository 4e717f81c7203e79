"""Staff saving a reward (services.save_reward): the stock change typed in the form is applied
to the stock as it is at the save, so redemptions and cancellations made meanwhile are kept."""

from decimal import Decimal

import pytest

from members.models import Member
from rewards import services
from rewards.models import Redemption, Reward
from tests.concurrency import race


def edited(reward: Reward, **fields) -> Reward:
    """The reward as an admin form posts it: loaded earlier, with the fields typed."""
    copy = Reward.objects.get(pk=reward.pk)
    for name, value in fields.items():
        setattr(copy, name, value)
    return copy


def test_a_new_reward_is_saved_as_typed(program):
    reward = Reward(
        program=program,
        kind=Reward.Kind.GIFT,
        name_fr="Café",
        points_cost=100,
        cost_amount=Decimal("1.50"),
        stock=8,
    )
    services.save_reward(reward=reward, shown_stock=None)
    assert Reward.objects.get(pk=reward.pk).stock == 8


def test_a_restock_adds_the_difference_to_the_stock_left(member, make_reward):
    reward = make_reward(points_cost=100, stock=5)
    form = edited(reward, stock=12, name_en="Renamed")  # shows 5, typed 12: 7 more
    services.redeem(member=member, reward=reward, channel="portal")  # 4 left meanwhile
    saved = services.save_reward(reward=form, shown_stock=5)
    assert saved.stock == 11
    reward.refresh_from_db()
    assert (reward.stock, reward.name_en) == (11, "Renamed")


def test_other_fields_saved_keep_the_stock_taken_meanwhile(member, make_reward):
    reward = make_reward(points_cost=100, stock=5)
    form = edited(reward, points_cost=150)
    services.redeem(member=member, reward=reward, channel="portal")
    assert services.save_reward(reward=form, shown_stock=5).stock == 4
    reward.refresh_from_db()
    assert (reward.stock, reward.points_cost) == (4, 150)


def test_a_lowering_never_goes_below_zero(member, make_reward):
    reward = make_reward(points_cost=100, stock=2)
    form = edited(reward, stock=0)  # shows 2, typed 0: 2 fewer
    services.redeem(member=member, reward=reward, channel="portal")  # 1 left meanwhile
    assert services.save_reward(reward=form, shown_stock=2).stock == 0


@pytest.mark.parametrize(("before", "typed"), [(None, 6), (6, None)])
def test_switching_between_limited_and_unlimited_sets_the_stock(make_reward, before, typed):
    reward = make_reward(points_cost=100, stock=before)
    assert services.save_reward(reward=edited(reward, stock=typed), shown_stock=before).stock == (
        typed
    )
    reward.refresh_from_db()
    assert reward.stock == typed


@pytest.mark.postgres
@pytest.mark.concurrency
@pytest.mark.django_db(transaction=True)
def test_a_restock_racing_twenty_redemptions_gives_the_exact_stock(make_member, make_reward):
    reward = make_reward(points_cost=100, stock=30)
    form = edited(reward, stock=40, name_en="Restocked")  # the form shows 30; 10 more typed
    first = make_member(1000)
    for _ in range(5):  # redeemed while the form is open: 25 left
        services.redeem(member=first, reward=reward, channel="portal")
    member_ids = [make_member(1000).pk for _ in range(20)]

    def work(i):
        if i == 0:
            return services.save_reward(reward=form, shown_stock=30)
        return services.redeem(
            member=Member.objects.get(pk=member_ids[i - 1]),
            reward=Reward.objects.get(pk=reward.pk),
            channel=Redemption.Channel.PORTAL,
        )

    results = race(21, work)

    assert not [r for r in results if isinstance(r, Exception)], results
    reward.refresh_from_db()
    # 30 - 5 before the race - 20 during it + 10 restocked, whatever the order of the commits.
    assert reward.stock == 15
    assert reward.name_en == "Restocked"
    assert Redemption.objects.filter(reward=reward).count() == 25
