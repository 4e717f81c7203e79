"""Reproducible demo history: members, a year of purchases (member and anonymous) and their
ledger, generated in bulk (PostgreSQL COPY; multi-row inserts on SQLite; demo/history_sql.py).

This is a bulk loader, not a business action. Its rows are what live traffic leaves behind,
with one shortcut: points of purchases whose return window has closed are loaded directly in
the available bucket (one earn row), where live traffic writes an earn in pending and a
balanced release pair; recent purchases stay pending with their release date. Ledger rows go
through the ledger's bulk-load functions, and the members' cached balances are then moved by
them (`ledger.settle_loaded_entries`), so `check_ledger` holds. Generated purchases carry no
lines and earn the program's channel rate times the member's tier multiplier.
"""

import bisect
import itertools
import math
import multiprocessing
import os
import random
import zoneinfo
from collections import namedtuple
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal

import django
from django.db import transaction
from django.utils import timezone

from loyalty.models import EarningRule, Program, Store, Tier
from members import ledger
from members.cards import REFERRAL_ALPHABET, luhn_check_digit
from members.models import Member, PointsEntry, Purchase

from .history_sql import (
    ENTRY_COLUMNS,
    MEMBER_COLUMNS,
    PURCHASE_COLUMNS,
    Writer,
    copy_formatter,
    sqlite_value,
    uuid4,
)

FIRST_NAMES = [
    "Camille",
    "Léa",
    "Manon",
    "Chloé",
    "Emma",
    "Inès",
    "Jade",
    "Louise",
    "Sarah",
    "Julie",
    "Lucas",
    "Hugo",
    "Louis",
    "Nathan",
    "Gabriel",
    "Arthur",
    "Jules",
    "Thomas",
    "Paul",
    "Léo",
    "Claire",
    "Anne",
    "Marie",
    "Sophie",
    "Nicolas",
    "Pierre",
    "Antoine",
    "Élodie",
    "Yasmine",
    "Karim",
    "Mehdi",
    "Amina",
    "Fatou",
    "Moussa",
    "Lina",
    "Zoé",
    "Noah",
    "Adam",
    "Alice",
    "Rose",
]
LAST_NAMES = [
    "Martin",
    "Bernard",
    "Dubois",
    "Thomas",
    "Robert",
    "Richard",
    "Petit",
    "Durand",
    "Leroy",
    "Moreau",
    "Simon",
    "Laurent",
    "Lefebvre",
    "Michel",
    "Garcia",
    "David",
    "Bertrand",
    "Roux",
    "Vincent",
    "Fournier",
    "Morel",
    "Girard",
    "André",
    "Lefèvre",
    "Mercier",
    "Dupont",
    "Lambert",
    "Bonnet",
    "François",
    "Martinez",
    "Benali",
    "Nguyen",
    "Diallo",
    "Haddad",
    "Rousseau",
]
# Retail seasonality by calendar month: January sales, a summer dip, the Christmas peak.
SEASON = {
    1: 1.15,
    2: 0.8,
    3: 0.9,
    4: 0.95,
    5: 1.0,
    6: 1.05,
    7: 1.1,
    8: 0.75,
    9: 0.95,
    10: 1.0,
    11: 1.25,
    12: 1.7,
}
# Purchases per month by kind of member, and the share of members of each kind.
SEGMENTS = [(0.12, 2.2), (0.33, 0.75), (0.35, 0.3), (0.20, 0.35)]  # last: churning
ANONYMOUS_PER_MEMBER_PURCHASE = 0.45
CHUNK = 5000
StoreInfo = namedtuple("StoreInfo", "pk slug channel")
CHANNELS = ["shop", "web", "app"]
CHANNEL_CUMULATIVE = [0.7, 0.9]  # 70% shop, 20% web, 10% app


@dataclass
class DemoStats:
    members: int = 0
    purchases: int = 0
    anonymous_purchases: int = 0
    entries: int = 0


def _card(seed: int, i: int) -> str:
    body = f"9{seed % 10}{i:010d}"
    return body + luhn_check_digit(body)


def _referral(seed: int, i: int) -> str:
    n = i * 7919 + seed * 104729 + 1
    out = []
    for _ in range(8):
        n, r = divmod(n, len(REFERRAL_ALPHABET))
        out.append(REFERRAL_ALPHABET[r])
    return "".join(out)


@dataclass(frozen=True)
class _Plan:
    """Everything a chunk needs, as plain picklable data (chunks run in worker processes)."""

    seed: int
    program_pk: int
    currency: str
    time_zone: str
    now: datetime
    start: datetime
    month_starts: list
    stores: list
    store_cumulative: list
    tiers: list  # (pk, qualify_threshold, earn_multiplier), best tier first
    rates: dict
    window: timedelta
    member_id_base: int
    purchase_id_base: int
    entry_id_base: int
    as_copy_text: bool
    members_end: int
    today: date


_Tier = namedtuple("_Tier", "pk qualify_threshold earn_multiplier")
# Each chunk gets its own id ranges, so chunks can be generated in any order and in parallel.
ID_STRIDE = 10_000_000


def _generate_chunk(plan: _Plan, chunk: int):
    """Rows of members [chunk * CHUNK, (chunk + 1) * CHUNK): members, purchases, ledger rows,
    as COPY text (PostgreSQL) or tuples (elsewhere), with their counts. Deterministic: the
    chunk's random generator is seeded from the seed and the chunk number."""
    rng = random.Random(f"{plan.seed}:{chunk}")  # nosec B311  # seeded generator for reproducible demo data, not security
    tz = zoneinfo.ZoneInfo(plan.time_zone)
    now, start = plan.now, plan.start
    purchase_id = plan.purchase_id_base + chunk * ID_STRIDE
    entry_id = plan.entry_id_base + chunk * ID_STRIDE
    member_rows, purchase_rows, entry_rows = [], [], []
    purchases = anonymous = 0
    for i in range(chunk * CHUNK, min(plan.members_end, (chunk + 1) * CHUNK)):
        member_id = plan.member_id_base + i
        enrolled = (
            start
            - timedelta(days=365)
            + timedelta(seconds=rng.random() * (now - start + timedelta(days=365)).total_seconds())
        )
        r, rate, churn_at = rng.random(), 0.3, None
        acc = 0.0
        for k, (share, monthly) in enumerate(SEGMENTS):
            acc += share
            if r <= acc:
                rate = monthly
                if k == len(SEGMENTS) - 1:
                    churn_at = enrolled + (now - enrolled) * rng.uniform(0.2, 0.7)
                break
        taste = rng.lognormvariate(0, 0.35)  # some members buy bigger baskets
        member_purchases = []
        for m_start, m_end in plan.month_starts:
            if m_end <= enrolled or (churn_at and m_start > churn_at):
                continue
            expected = rate * SEASON[m_start.astimezone(tz).month]
            count = int(expected) + (rng.random() < expected - int(expected))
            for _ in range(count):
                lo = max(m_start, enrolled)
                at = lo + timedelta(seconds=rng.random() * (m_end - lo).total_seconds())
                at = at.replace(microsecond=0)
                if at > now:
                    continue
                amount = _amount(rng, 3.55, taste)
                store = plan.stores[bisect.bisect(plan.store_cumulative, rng.random())]
                member_purchases.append((at, amount, store))
        member_purchases.sort(key=lambda p: p[0])
        spend_12m = sum(a for at, a, _s in member_purchases if at > now - timedelta(days=365))
        tier = next((t for t in plan.tiers if spend_12m >= t.qualify_threshold), plan.tiers[-1])
        # An upper bound of the qualifying spend (a window a little wider than the program's);
        # the first nightly requalification sets it exactly.
        bound = sum(
            (a for at, a, _s in member_purchases if at >= now - timedelta(days=368)), Decimal(0)
        )
        # Tiers above the entry one were earned at some point of the past year: their reviews
        # fall over the coming year.
        review_on = (
            plan.today + timedelta(days=rng.randint(1, 365))
            if tier.pk != plan.tiers[-1].pk
            else None
        )
        for at, amount, store in member_purchases:
            points = int(
                (amount * plan.rates[store.channel] * tier.earn_multiplier).to_integral_value(
                    ROUND_FLOOR
                )
            )
            released = at + plan.window <= now
            purchase_rows.append(
                purchase_row(
                    rng,
                    purchase_id,
                    plan,
                    store,
                    member_id,
                    at,
                    amount,
                    points,
                    plan.window,
                    released,
                )
            )
            if points:
                # Points whose return window closed long ago are loaded as already
                # available: one row, where live traffic would have written an earn
                # in pending and a release pair. Balances and kinds are the same.
                entry_rows.append(
                    earn_row(
                        rng,
                        entry_id,
                        plan.program_pk,
                        member_id,
                        points,
                        at,
                        purchase_id,
                        store.pk,
                        released,
                    )
                )
                entry_id += 1
            purchase_id += 1
            purchases += 1
            for _ in range(poisson_small(rng, ANONYMOUS_PER_MEMBER_PURCHASE)):
                anon_at = at + timedelta(minutes=rng.randint(-600, 600))
                if anon_at > now:
                    continue
                purchase_rows.append(
                    purchase_row(
                        rng,
                        purchase_id,
                        plan,
                        plan.stores[bisect.bisect(plan.store_cumulative, rng.random())],
                        None,
                        anon_at,
                        _amount(rng, 3.2, 1.0),
                        0,
                        plan.window,
                        True,
                    )
                )
                purchase_id += 1
                anonymous += 1
        first = rng.choice(FIRST_NAMES)
        last = rng.choice(LAST_NAMES)
        consent = rng.random() < 0.55
        last_activity = member_purchases[-1][0] if member_purchases else None
        channel = CHANNELS[bisect.bisect(CHANNEL_CUMULATIVE, rng.random())]
        member_rows.append(
            (
                member_id,
                plan.program_pk,
                _card(plan.seed, i),
                f"{_ascii(first)}.{_ascii(last)}.{i}@example.fr".lower(),
                "",
                first,
                last,
                (now - timedelta(days=rng.randint(18 * 365, 75 * 365))).date(),
                "fr" if rng.random() < 0.85 else "en",
                consent,
                enrolled if consent else None,
                "active",
                enrolled,
                channel,
                next((s.pk for s in plan.stores if s.channel == channel), None),
                _referral(plan.seed, i),
                None,
                tier.pk,
                review_on,
                None,
                bound,
                0,  # cached balances: moved by the ledger rows, once loaded
                0,
                0,
                last_activity,
                enrolled,
                now,
            )
        )
    counts = (len(member_rows), purchases, anonymous, len(entry_rows))
    tables = (
        (Member._meta.db_table, MEMBER_COLUMNS, member_rows),
        (Purchase._meta.db_table, PURCHASE_COLUMNS, purchase_rows),
        (PointsEntry._meta.db_table, ENTRY_COLUMNS, entry_rows),
    )
    if plan.as_copy_text:
        payload = [(t, c, "".join(map(copy_formatter(t), rows))) for t, c, rows in tables]
    else:
        payload = [(t, c, [tuple(map(sqlite_value, row)) for row in rows]) for t, c, rows in tables]
    return payload, counts


def generate_history(*, program: Program, members: int, months: int, seed: int) -> DemoStats:
    """Generate `members` members and `months` months of purchases for `program`, once.

    Reproducible: the same seed on the same day gives the same rows. On PostgreSQL, chunks of
    members are generated in worker processes (one core left to the server) while this process
    streams them with COPY.
    """
    stats = DemoStats()
    now = timezone.now().replace(microsecond=0)
    # Plain tuples: model attribute access (pk is a property) adds up over millions of rows.
    stores = [
        StoreInfo(*row)
        for row in Store.objects.filter(program=program, is_active=True)
        .order_by("pk")
        .values_list("pk", "slug", "channel")
    ]
    store_weights = [
        0.7 / max(1, sum(s.channel == "shop" for s in stores))
        if s.channel == "shop"
        else (0.2 if s.channel == "web" else 0.1)
        for s in stores
    ]
    total = sum(store_weights)
    start = now - timedelta(days=round(months * 30.44))
    writer = Writer()
    plan = _Plan(
        seed=seed,
        program_pk=program.pk,
        currency=program.currency,
        time_zone=program.time_zone,
        now=now,
        start=start,
        month_starts=_month_starts(start, now, program.tzinfo),
        stores=stores,
        store_cumulative=list(itertools.accumulate(w / total for w in store_weights))[:-1],
        tiers=[
            _Tier(*row)
            for row in Tier.objects.filter(program=program)
            .order_by("-rank")
            .values_list("pk", "qualify_threshold", "earn_multiplier")
        ],
        rates=channel_rates(program),
        window=timedelta(days=program.return_window_days),
        member_id_base=writer.next_id(Member),
        purchase_id_base=writer.next_id(Purchase),
        entry_id_base=writer.next_id(PointsEntry),
        as_copy_text=writer.pg,
        members_end=members,
        today=timezone.localtime(now, program.tzinfo).date(),
    )
    chunks = range((members + CHUNK - 1) // CHUNK)
    parallel = writer.pg and len(chunks) > 1
    pool = (
        ProcessPoolExecutor(
            # One core is left to PostgreSQL, which ingests the COPY streams.
            max_workers=max(1, (os.cpu_count() or 2) - 1),
            mp_context=multiprocessing.get_context("spawn"),
            # A spawned worker sets Django up (from the DJANGO_SETTINGS_MODULE it inherits)
            # before it imports this module, which imports models.
            initializer=django.setup,
        )
        if parallel
        else None
    )
    try:
        results = (
            pool.map(_generate_chunk, itertools.repeat(plan), chunks)
            if pool
            else (_generate_chunk(plan, chunk) for chunk in chunks)
        )
        with transaction.atomic():
            writer.defer_checks()
            with writer:
                for payload, (n_members, n_purchases, n_anonymous, n_entries) in results:
                    # Members first: purchases and ledger rows point to them.
                    for table, columns, rows in payload:
                        writer.write(table, columns, rows)
                    stats.members += n_members
                    stats.purchases += n_purchases
                    stats.anonymous_purchases += n_anonymous
                    stats.entries += n_entries
            for model in (Member, Purchase, PointsEntry):
                writer.reset_sequence(model)
            ledger.settle_loaded_entries(program.pk, entry_id_from=plan.entry_id_base)
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    return stats


def channel_rates(program: Program) -> dict[str, Decimal]:
    rates = dict.fromkeys(Store.Channel.values, program.base_earn_rate)
    for rule in EarningRule.objects.filter(
        program=program,
        kind=EarningRule.Kind.RATE,
        is_active=True,
        store=None,
        category="",
        sku="",
    ).exclude(channel=""):
        rates[rule.channel] = rule.value
    return rates


def _month_starts(start: datetime, now: datetime, tz) -> list[tuple[datetime, datetime]]:
    local = start.astimezone(tz).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    out = []
    while local < now:
        nxt = (local + timedelta(days=32)).replace(day=1)
        out.append((local, nxt))
        local = nxt
    return out


def _amount(rng: random.Random, mu: float, taste: float) -> Decimal:
    value = max(3.0, math.exp(rng.gauss(mu, 0.55)) * taste)
    return Decimal(f"{value:.2f}")


def poisson_small(rng: random.Random, lam: float) -> int:
    threshold, k, p = math.exp(-lam), 0, rng.random()
    while p > threshold:
        k += 1
        p *= rng.random()
    return k


def _ascii(name: str) -> str:
    table = str.maketrans("éèêëàâîïôöûüçÉ", "eeeeaaiioouucE")
    return name.translate(table)


def purchase_row(rng, pid, plan, store, member_id, at, amount, points, window, released):
    public_id = uuid4(rng)
    receipt = f"{store.slug[:8].upper()}-{pid:09d}"
    # Formatted by hand: json.dumps per row is the largest cost of a million-row load.
    # Every interpolated value is a number, a UUID or a slug: nothing needs escaping.
    breakdown = (
        f'[{{"code":"base","name":"","factor":"1","amount":"{amount}","points":{points},'
        f'"rule_id":null}}]'
        if member_id
        else "[]"
    )
    release_at = at + window if member_id and points else None
    response = (
        f'{{"id":"{public_id}","receipt_id":"{receipt}","store":"{store.slug}",'
        f'"amount":"{amount}","currency":"{plan.currency}","points_earned":{points}}}'
    )
    return (
        pid,
        public_id,
        plan.program_pk,
        store.pk,
        member_id,
        receipt,
        amount,
        plan.currency,
        at,
        at,
        points,
        Decimal("0"),
        0,
        breakdown,
        release_at,
        (release_at or at) if released or not member_id or not points else None,
        "",
        response,
    )


def earn_row(rng, entry_id, program_pk, member_id, points, at, purchase_id, store_pk, released):
    """The ledger row (ENTRY_COLUMNS) of a purchase's points: available when its return window
    closed before now, pending otherwise."""
    return (
        entry_id,
        uuid4(rng),
        program_pk,
        member_id,
        "earn",
        "available" if released else "pending",
        points,
        at,
        at,
        purchase_id,
        None,
        store_pk,
        None,
        "",
    )
