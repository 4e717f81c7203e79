"""The portal's one-time redemption (portal.services.redeem_once): one voucher per token."""

import pytest

from loyalty.errors import NotFound
from members.services import adjust_points
from portal.services import redeem_once
from rewards.errors import NotEnoughPoints
from rewards.models import Redemption


def test_a_token_gives_one_voucher_to_its_member_only(program, make_account, make_reward):
    alice, bob = make_account(1000), make_account(1000)
    reward = make_reward(points_cost=100)
    first = redeem_once(member=alice, reward=reward, token="t" * 32)
    assert redeem_once(member=alice, reward=reward, token="t" * 32) == first
    with pytest.raises(NotFound):
        redeem_once(member=bob, reward=reward, token="t" * 32)
    assert Redemption.objects.filter(reward=reward).count() == 1
    bob.refresh_from_db()
    assert bob.points_available == 1000


def test_a_refused_redemption_leaves_its_token_free(program, make_account, make_reward):
    member = make_account(50)
    reward = make_reward(points_cost=100)
    with pytest.raises(NotEnoughPoints):
        redeem_once(member=member, reward=reward, token="u" * 32)
    # Topped up, the member can send the same confirmation again.
    adjust_points(member=member, points=950, reason="test", staff_user=None)
    assert redeem_once(member=member, reward=reward, token="u" * 32).member_id == member.pk
