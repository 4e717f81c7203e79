"""The demo catalogue and redemption history made by seed_demo: a bilingual catalogue of every
kind (with a tier-only reward), vouchers of every outcome made through the services (the ledger
stays exact), and a second seed_demo that adds nothing."""

import time
from io import StringIO

import pytest
from django.core.management import call_command
from django.db.models import Count

from demo import catalogue
from loyalty.models import Program
from members.ledger import find_mismatches
from members.models import Member, PointsEntry
from rewards.models import Redemption, Reward

pytestmark = pytest.mark.django_db

MEMBERS = 60
MONTHS = 12


def seed_demo(seed=5):
    out = StringIO()
    call_command("seed_demo", members=MEMBERS, months=MONTHS, seed=seed, stdout=out)
    return out.getvalue()


def statuses():
    return dict(Redemption.objects.values_list("status").annotate(n=Count("pk")).order_by())


def test_seed_demo_makes_the_catalogue_and_a_consistent_redemption_history(capsys):
    out = seed_demo()
    program = Program.objects.get(slug="maison-lumiere")

    rewards = {r.name_fr: r for r in Reward.objects.filter(program=program)}
    assert len(rewards) == len(catalogue.CATALOGUE)
    assert all(r.name_en and r.description_fr and r.description_en for r in rewards.values())
    kinds = {r.kind for r in rewards.values()}
    assert kinds == set(Reward.Kind.values)
    five = rewards["Bon d'achat de 5 €"]
    assert (five.kind, five.value, five.points_cost) == (Reward.Kind.DISCOUNT_AMOUNT, 5, 500)
    assert rewards["20 % sur l'article de votre choix"].value == 20
    assert all(r.sku for r in rewards.values() if r.kind == Reward.Kind.FREE_PRODUCT)
    assert all(r.partner_name for r in rewards.values() if r.kind == Reward.Kind.PARTNER)
    assert rewards["Atelier création de bougies"].stock is not None
    assert all(r.cost_amount > 0 for r in rewards.values())
    assert not rewards["Parapluie Maison Lumière"].is_active  # shows an inactive one
    tier_only = rewards["Soirée privée nouvelle collection"]
    assert sorted(t.name for t in tier_only.tiers.all()) == ["Or", "Platine"]

    # Vouchers of every outcome, each one's points in the ledger.
    counts = statuses()
    assert set(counts) == set(Redemption.Status.values), counts
    assert sum(counts.values()) >= catalogue.MIN_REDEEMERS
    assert f"generated {sum(counts.values())} redemptions" in out
    redemptions = Redemption.objects.select_related("reward", "member")
    for voucher in redemptions:
        assert voucher.member.program_id == program.pk
        assert voucher.issued_at < voucher.expires_at
        debit = PointsEntry.objects.get(txn=voucher.debit_txn)
        assert debit.points == -voucher.points_spent
        assert debit.effective_at == voucher.issued_at
        if voucher.reward.tiers.exists():
            assert voucher.member.tier.name in ("Or", "Platine")
        if voucher.status == Redemption.Status.USED:
            assert voucher.issued_at < voucher.used_at < voucher.expires_at
            assert voucher.member.purchases.filter(receipt_id=voucher.used_receipt_id).exists()
        if voucher.status == Redemption.Status.CANCELLED:
            assert voucher.cancel_reason
            refund = PointsEntry.objects.get(txn=voucher.refund_txn)
            assert refund.points == voucher.points_spent
            assert voucher.issued_at <= refund.effective_at < voucher.expires_at
        if voucher.status == Redemption.Status.EXPIRED:
            assert voucher.expires_at <= voucher.closed_at
    # Ids follow the issue dates, as live traffic would leave them.
    by_id = list(Redemption.objects.order_by("pk").values_list("issued_at", flat=True))
    assert by_id == sorted(by_id)
    # Nobody spent points they did not have.
    assert not Member.objects.filter(points_available__lt=0).exists()
    assert find_mismatches() == []
    call_command("check_ledger")
    assert "consistent" in capsys.readouterr().out


def test_a_second_seed_demo_adds_nothing_and_keeps_the_stock():
    seed_demo()
    workshop = Reward.objects.get(name_fr="Atelier création de bougies")
    Reward.objects.filter(pk=workshop.pk).update(stock=3, name_en="Changed by hand")
    before = (
        Reward.objects.count(),
        statuses(),
        PointsEntry.objects.count(),
        list(Member.objects.order_by("pk").values_list("points_available", flat=True)),
    )

    out = seed_demo()
    assert "history already present" in out
    after = (
        Reward.objects.count(),
        statuses(),
        PointsEntry.objects.count(),
        list(Member.objects.order_by("pk").values_list("points_available", flat=True)),
    )
    assert after == before
    workshop.refresh_from_db()
    assert workshop.name_en == "Candle-making workshop"  # the catalogue is brought up to date
    assert workshop.stock == 3  # but its stock is what redemptions left
    assert find_mismatches() == []


def test_seed_catalogue_alone_is_idempotent():
    call_command("seed_demo", members=5, months=1, seed=1, stdout=StringIO())
    program = Program.objects.get(slug="maison-lumiere")
    first = list(Reward.objects.order_by("pk").values())
    catalogue.seed_catalogue(program)
    assert list(Reward.objects.order_by("pk").values()) == first


def fingerprint():
    return sorted(
        Redemption.objects.values_list(
            "member__card_number", "reward__name_fr", "status", "points_spent", "channel"
        )
    )


# Sequences reset: the demo campaign's hold-out group hashes its id with the members' ids.
@pytest.mark.django_db(transaction=True, reset_sequences=True)
def test_the_same_seed_gives_the_same_redemptions():
    seed_demo(seed=5)
    first = fingerprint()
    assert first
    call_command("flush", interactive=False)
    seed_demo(seed=5)
    assert fingerprint() == first
    call_command("flush", interactive=False)
    seed_demo(seed=6)
    assert fingerprint() != first


def test_redemptions_are_bounded_by_the_limit():
    seed_demo()
    program = Program.objects.get(slug="maison-lumiere")
    before = Redemption.objects.count()

    started = time.monotonic()
    stats = catalogue.generate_redemptions(program, seed=9, limit=4, expire=False)
    assert time.monotonic() - started < 30
    assert 0 < stats.redeemed <= 4
    assert Redemption.objects.count() == before + stats.redeemed
    assert find_mismatches() == []

    assert catalogue.generate_redemptions(program, seed=9, limit=0).redeemed == 0
    assert Redemption.objects.count() == before + stats.redeemed
