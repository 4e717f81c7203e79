"""The demo reward catalogue of Maison Lumière, and a reproducible history of redemptions.

Unlike the purchase history (demo/history.py, a bulk loader), redemptions go through the
services (`redeem`, `use_voucher`, `cancel`) and the nightly voucher job, so the ledger, the stock
and the limits are exactly what live traffic leaves. They are back-dated: each member redeems
only once their balance had reached the points spent, and a voucher is used on one of the
member's real receipts, after it was issued and before it expired.
"""

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from loyalty.errors import DomainError
from loyalty.models import Program, Store, Tier
from members import jobs
from members.models import Member, PointsEntry, Purchase
from rewards import services
from rewards.jobs import expire_vouchers
from rewards.models import Redemption, Reward

K = Reward.Kind
P = Reward.LimitPeriod

# Keyed by name_fr (stable). `stock` is the initial stock: set when the reward is created,
# never reset by a later seed (redemptions and cancellations move it). `weight`: how popular
# the reward is in the generated history.
CATALOGUE = [
    {
        "name_fr": "Bougie parfumée Lumière, format voyage",
        "name_en": "Lumière scented candle, travel size",
        "description_fr": "Notre bougie signature (cire végétale, 20 h de combustion).",
        "description_en": "Our signature candle (plant wax, 20 hours of burning).",
        "kind": K.FREE_PRODUCT,
        "sku": "ML-BOUGIE-VOY",
        "points_cost": 300,
        "cost_amount": Decimal("3.20"),
        "voucher_valid_days": 90,
        "display_order": 10,
        "weight": 3,
    },
    {
        "name_fr": "Bon d'achat de 5 €",
        "name_en": "€5 voucher",
        "description_fr": "5 € de remise sur votre prochain achat, en boutique ou en ligne.",
        "description_en": "€5 off your next purchase, in store or online.",
        "kind": K.DISCOUNT_AMOUNT,
        "value": Decimal("5"),
        "points_cost": 500,
        "cost_amount": Decimal("5.00"),
        "voucher_valid_days": 90,
        "display_order": 20,
        "weight": 5,
    },
    {
        "name_fr": "Trousse de toilette Maison Lumière",
        "name_en": "Maison Lumière toiletry bag",
        "description_fr": "En coton recyclé, à retirer en boutique.",
        "description_en": "In recycled cotton, to collect in store.",
        "kind": K.FREE_PRODUCT,
        "sku": "ML-TROUSSE-01",
        "points_cost": 700,
        "cost_amount": Decimal("4.80"),
        "voucher_valid_days": 90,
        "display_order": 30,
        "weight": 2,
    },
    {
        "name_fr": "Bon d'achat de 10 €",
        "name_en": "€10 voucher",
        "description_fr": "10 € de remise sur votre prochain achat, en boutique ou en ligne.",
        "description_en": "€10 off your next purchase, in store or online.",
        "kind": K.DISCOUNT_AMOUNT,
        "value": Decimal("10"),
        "points_cost": 1000,
        "cost_amount": Decimal("10.00"),
        "voucher_valid_days": 90,
        "display_order": 40,
        "weight": 4,
    },
    {
        "name_fr": "20 % sur l'article de votre choix",
        "name_en": "20% off one item of your choice",
        "description_fr": "Une remise de 20 % sur un article, hors cartes cadeaux. "
        "Une fois par mois.",
        "description_en": "20% off one item, gift cards excluded. Once a month.",
        "kind": K.DISCOUNT_PERCENT,
        "value": Decimal("20"),
        "points_cost": 1200,
        # 20 % of an average item (about 45 €).
        "cost_amount": Decimal("9.00"),
        "limit_per_member": 1,
        "limit_period": P.MONTH,
        "voucher_valid_days": 30,
        "display_order": 50,
        "weight": 3,
    },
    {
        "name_fr": "Deux places de cinéma",
        "name_en": "Two cinema tickets",
        "description_fr": "Deux places valables dans tous les cinémas Ciné Lumen.",
        "description_en": "Two tickets for any Ciné Lumen cinema.",
        "kind": K.PARTNER,
        "partner_name": "Ciné Lumen",
        # The price negotiated with the partner.
        "points_cost": 1500,
        "cost_amount": Decimal("12.00"),
        "voucher_valid_days": 180,
        "display_order": 60,
        "weight": 2,
    },
    {
        "name_fr": "Atelier création de bougies",
        "name_en": "Candle-making workshop",
        "description_fr": "Deux heures en boutique avec notre parfumeur ; vous repartez avec "
        "votre bougie. Places limitées.",
        "description_en": "Two hours in store with our perfumer; you take your candle home. "
        "Limited places.",
        "kind": K.GIFT,
        "points_cost": 2500,
        "cost_amount": Decimal("38.00"),
        "stock": 24,
        "limit_per_member": 1,
        "limit_period": P.YEAR,
        "voucher_valid_days": 60,
        "display_order": 70,
        "weight": 1,
    },
    {
        "name_fr": "Soirée privée nouvelle collection",
        "name_en": "New collection private evening",
        "description_fr": "Découvrez la collection avant tout le monde, avec une personne de "
        "votre choix. Réservé aux membres Or et Platine.",
        "description_en": "See the collection before anyone else, with a guest of your "
        "choice. For Gold and Platinum members.",
        "kind": K.GIFT,
        "points_cost": 800,
        "cost_amount": Decimal("22.00"),
        "stock": 60,
        "limit_per_member": 1,
        "limit_period": P.YEAR,
        "voucher_valid_days": 90,
        "display_order": 80,
        "tiers": ("Or", "Platine"),
        "weight": 3,
    },
    {
        "name_fr": "Parapluie Maison Lumière",
        "name_en": "Maison Lumière umbrella",
        "description_fr": "Retiré du catalogue.",
        "description_en": "No longer in the catalogue.",
        "kind": K.FREE_PRODUCT,
        "sku": "ML-PARAPLUIE",
        "points_cost": 900,
        "cost_amount": Decimal("7.50"),
        "is_active": False,
        "display_order": 90,
        "weight": 0,
    },
]
WEIGHTS = {item["name_fr"]: item["weight"] for item in CATALOGUE}

CANCEL_REASONS = [
    "Erreur de saisie en caisse",
    "Demande de la cliente",
    "Demande du client",
    "Article indisponible en boutique",
    "Bon émis en double",
]
# What becomes of a voucher: used on a receipt, cancelled by staff, or left unused (expired if
# its date has passed).
FATES = [("used", 0.55), ("cancelled", 0.08), ("unused", 0.37)]
CHANNELS = [
    (Redemption.Channel.PORTAL, 0.45),
    (Redemption.Channel.POS, 0.45),
    (Redemption.Channel.STAFF, 0.10),
]
MIN_REDEEMERS = 10
MAX_PER_MEMBER = 3
CHUNK = 1000


def seed_catalogue(program: Program) -> list[Reward]:
    """Create or bring up to date the demo catalogue of `program` (idempotent, keyed by the
    French name). The stock is set only when a reward is created."""
    tiers = {t.name: t for t in Tier.objects.filter(program=program)}
    rewards = []
    with transaction.atomic():
        for item in CATALOGUE:
            spec = {k: v for k, v in item.items() if k not in ("name_fr", "tiers", "weight")}
            stock = spec.pop("stock", None)
            spec = {
                "name_en": "",
                "description_fr": "",
                "description_en": "",
                "value": None,
                "sku": "",
                "partner_name": "",
                "limit_per_member": None,
                "limit_period": P.LIFETIME,
                "voucher_valid_days": 90,
                "is_active": True,
                **spec,
            }
            reward, _ = Reward.objects.update_or_create(
                program=program,
                name_fr=item["name_fr"],
                defaults=spec,
                create_defaults={**spec, "stock": stock},
            )
            reward.tiers.set([tiers[name] for name in item.get("tiers", ()) if name in tiers])
            rewards.append(reward)
    return rewards


@dataclass
class RedemptionStats:
    redeemed: int = 0
    used: int = 0
    cancelled: int = 0
    expired: int = 0
    refused: int = 0
    by_status: dict = field(default_factory=dict)


@dataclass
class _Planned:
    member_id: int
    reward: Reward
    issued_at: datetime
    channel: str
    store: Store | None
    fate: str
    then_at: datetime | None = None  # when it is used or cancelled
    receipt: tuple | None = None  # (receipt id, store id) of the purchase it is used on
    reason: str = ""
    redemption: Redemption | None = None
    lo: datetime | None = None  # when the member could have redeemed it, from and until
    hi: datetime | None = None


def generate_redemptions(
    program: Program,
    *,
    seed: int,
    share: float = 0.05,
    limit: int = 1000,
    expire: bool = True,
    now: datetime | None = None,
) -> RedemptionStats:
    """A reproducible past of redemptions: about `share` of the program's members (at least a
    few, among those with enough points) redeem one to three rewards, at most `limit`
    redemptions in all. Then the nightly voucher job expires the unused ones past their date
    (unless `expire` is false)."""
    now = (now or timezone.now()).replace(microsecond=0)
    rng = random.Random(f"rewards-{seed}")  # nosec B311  # seeded generator for reproducible demo data, not security
    stats = RedemptionStats()
    catalogue = [
        (reward, {t.pk for t in reward.tiers.all()}, WEIGHTS.get(reward.name_fr, 1))
        for reward in Reward.objects.filter(program=program, is_active=True)
        .prefetch_related("tiers")
        .order_by("display_order", "pk")
    ]
    catalogue = [c for c in catalogue if c[2] > 0 and _available(c[0], now)]
    if not catalogue or limit <= 0:
        return stats
    cheapest = min(reward.points_cost for reward, _t, _w in catalogue)
    eligible = list(
        Member.objects.filter(
            program=program, status=Member.Status.ACTIVE, points_available__gte=cheapest
        )
        .order_by("pk")
        .values_list("pk", "tier_id", "points_available")
    )
    wanted = max(MIN_REDEEMERS, round(share * Member.objects.filter(program=program).count()))
    chosen = sorted(rng.sample(eligible, min(len(eligible), wanted, limit)))
    if not chosen:
        return stats
    stores = {s.pk: s for s in Store.objects.filter(program=program)}
    shops = [s for s in sorted(stores.values(), key=lambda s: s.pk) if s.channel == "shop"]
    credits, receipts = _histories([pk for pk, _t, _p in chosen])

    plan: list[_Planned] = []
    for member_id, tier_id, available in chosen:
        picks, budget = [], available
        while len(picks) < MAX_PER_MEMBER and len(plan) + len(picks) < limit:
            options = [
                (reward, weight)
                for reward, tiers, weight in catalogue
                if reward.points_cost <= budget
                and (not tiers or tier_id in tiers)
                and reward not in picks
            ]
            if not options:
                break
            reward = rng.choices([o[0] for o in options], [o[1] for o in options])[0]
            picks.append(reward)
            budget -= reward.points_cost
            if rng.random() < 0.6:
                break
        if not picks:
            continue
        since = _balance_reached(credits.get(member_id, []), sum(r.points_cost for r in picks))
        if since is None:
            continue
        lo, hi = since + timedelta(minutes=5), now - timedelta(hours=1)
        if hi - lo < timedelta(days=1):
            continue
        for reward in picks:
            planned = _plan_one(rng, member_id, reward, lo, hi, receipts.get(member_id, []), shops)
            planned.lo, planned.hi = lo, hi
            plan.append(planned)
    _vary(rng, plan, now)

    # Chronologically, as it happened: the limits and the stock see the vouchers in order.
    events = [(p.issued_at, 0, i) for i, p in enumerate(plan)]
    events += [(p.then_at, 1, i) for i, p in enumerate(plan) if p.then_at]
    events.sort()
    members = {m.pk: m for m in Member.objects.filter(pk__in={p.member_id for p in plan})}
    with transaction.atomic():
        for at, step, i in events:
            planned = plan[i]
            if step == 0:
                try:
                    planned.redemption = services.redeem(
                        member=members[planned.member_id],
                        reward=planned.reward,
                        channel=planned.channel,
                        store=planned.store,
                        now=at,
                    )
                except DomainError:
                    stats.refused += 1
                    continue
                stats.redeemed += 1
            elif planned.redemption is None:
                continue
            elif planned.fate == "used":
                receipt_id, store_id = planned.receipt
                services.use_voucher(
                    program=program,
                    code=planned.redemption.code,
                    store=stores[store_id],
                    receipt_id=receipt_id,
                    now=at,
                )
            else:
                services.cancel(redemption=planned.redemption, reason=planned.reason, now=at)
    if expire and stats.redeemed:
        jobs.run_job("expire_vouchers", expire_vouchers, now=now, programs=[program])
    counts = dict(
        Redemption.objects.filter(pk__in=[p.redemption.pk for p in plan if p.redemption])
        .values_list("status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    stats.by_status = counts
    stats.used = counts.get(Redemption.Status.USED, 0)
    stats.cancelled = counts.get(Redemption.Status.CANCELLED, 0)
    stats.expired = counts.get(Redemption.Status.EXPIRED, 0)
    return stats


def _available(reward: Reward, now: datetime) -> bool:
    return (reward.valid_from is None or reward.valid_from <= now) and (
        reward.valid_until is None or now < reward.valid_until
    )


def _vary(rng: random.Random, plan: list[_Planned], now: datetime) -> None:
    """Make sure a small history still shows vouchers of every outcome (used, cancelled,
    expired, still open) when the plan is big enough: an outcome missing is given to a
    voucher whose outcome is shared with others."""
    if len(plan) < 4:
        return
    margin = timedelta(days=1)

    def last_expiring(p):  # issued up to then, a voucher has expired by now
        return now - timedelta(days=p.reward.voucher_valid_days) - margin

    def outcome(p):
        if p.fate != "unused":
            return p.fate
        return "expired" if p.issued_at <= last_expiring(p) else "open"

    def make_cancelled(p):
        p.fate, p.receipt, p.reason = "cancelled", None, rng.choice(CANCEL_REASONS)
        p.then_at = _cancel_at(rng, p.issued_at, p.hi)

    def make_expired(p):
        p.fate, p.then_at, p.receipt = "unused", None, None
        p.issued_at = _uniform(rng, p.lo, last_expiring(p))

    def make_open(p):
        p.fate, p.then_at, p.receipt = "unused", None, None
        p.issued_at = _uniform(rng, max(p.lo, last_expiring(p) + 2 * margin), p.hi)

    changes = [
        ("cancelled", make_cancelled, lambda p: True),
        ("expired", make_expired, lambda p: p.lo < last_expiring(p)),
        ("open", make_open, lambda p: p.hi > last_expiring(p) + 3 * margin),
    ]
    for wanted, change, possible in changes:
        outcomes = [outcome(p) for p in plan]
        if wanted in outcomes:
            continue
        candidates = [
            p for p, o in zip(plan, outcomes, strict=True) if outcomes.count(o) > 1 and possible(p)
        ]
        if candidates:
            change(rng.choice(candidates))


def _histories(member_ids: list[int]) -> tuple[dict, dict]:
    """For each member: the movements of their available points, in time order, and their
    purchases (time, receipt id, store id)."""
    credits: dict[int, list] = {}
    receipts: dict[int, list] = {}
    for start in range(0, len(member_ids), CHUNK):
        ids = member_ids[start : start + CHUNK]
        for member_id, at, points in (
            PointsEntry.objects.filter(member_id__in=ids, bucket=PointsEntry.Bucket.AVAILABLE)
            .order_by("member_id", "effective_at", "pk")
            .values_list("member_id", "effective_at", "points")
        ):
            credits.setdefault(member_id, []).append((at, points))
        for member_id, at, receipt_id, store_id in (
            Purchase.objects.filter(member_id__in=ids)
            .order_by("member_id", "occurred_at", "pk")
            .values_list("member_id", "occurred_at", "receipt_id", "store_id")
        ):
            receipts.setdefault(member_id, []).append((at, receipt_id, store_id))
    return credits, receipts


def _balance_reached(movements: list, points: int) -> datetime | None:
    """The instant from which the member's available balance never went below `points` (so
    debiting them then leaves every later balance non-negative), or None."""
    balance, since = 0, None
    for at, delta in movements:
        balance += delta
        if balance < points:
            since = None
        elif since is None:
            since = at
    return since


def _uniform(rng: random.Random, lo: datetime, hi: datetime) -> datetime:
    seconds = max(0.0, (hi - lo).total_seconds())
    return (lo + timedelta(seconds=rng.random() * seconds)).replace(microsecond=0)


def _cancel_at(rng: random.Random, issued_at: datetime, hi: datetime) -> datetime:
    """Cancelled within three days of being issued (well before it expires), before `hi`."""
    delay = timedelta(minutes=rng.randint(5, 3 * 24 * 60))
    return min(issued_at + delay, issued_at + (hi - issued_at) / 2).replace(microsecond=0)


def _plan_one(rng, member_id, reward, lo, hi, receipts, shops) -> _Planned:
    fate = rng.choices([f for f, _w in FATES], [w for _f, w in FATES])[0]
    channel = rng.choices([c for c, _w in CHANNELS], [w for _c, w in CHANNELS])[0]
    store = rng.choice(shops) if channel != Redemption.Channel.PORTAL and shops else None
    validity = timedelta(days=reward.voucher_valid_days)
    if fate == "used":
        # Used on one of the member's receipts, a few days to three weeks after it was issued.
        window = min(timedelta(days=21), validity - timedelta(hours=1))
        usable = [r for r in receipts if lo + timedelta(hours=1) < r[0] < hi]
        if usable:
            at, receipt_id, store_id = rng.choice(usable)
            issued_at = _uniform(rng, max(lo, at - window), at - timedelta(minutes=30))
            return _Planned(
                member_id,
                reward,
                issued_at,
                channel,
                store,
                "used",
                then_at=at,
                receipt=(receipt_id, store_id),
            )
        fate = "unused"
    issued_at = _uniform(rng, lo, hi)
    if fate == "cancelled":
        return _Planned(
            member_id,
            reward,
            issued_at,
            channel,
            store,
            "cancelled",
            then_at=_cancel_at(rng, issued_at, hi),
            reason=rng.choice(CANCEL_REASONS),
        )
    return _Planned(member_id, reward, issued_at, channel, store, "unused")
