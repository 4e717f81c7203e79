"""Reproducible demo history: members, a year of purchases (member and anonymous) and their
ledger, generated in bulk (PostgreSQL COPY; multi-row inserts on SQLite).

This is a bulk loader, not a business action: it writes rows that are exactly what the
services would have written for the same purchases (earn in pending, then a balanced release
to available once the return window closed) and sets each member's cached balances to the
sums of their rows, so `check_ledger` holds. Generated purchases carry no lines and earn the
program's channel rate times the member's tier multiplier.
"""

import math
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal

from django.db import connection, transaction
from django.utils import timezone

from loyalty.models import EarningRule, Program, Store, Tier

from .cards import REFERRAL_ALPHABET, luhn_check_digit
from .models import Member, PointsEntry, Purchase

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


@dataclass
class DemoStats:
    members: int = 0
    purchases: int = 0
    anonymous_purchases: int = 0
    entries: int = 0


def _sqlite_value(value):
    """Values as Django stores them in SQLite: UUIDs as hex, times as naive UTC text."""
    if isinstance(value, uuid.UUID):
        return value.hex
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ")
    if isinstance(value, Decimal | date):
        return str(value)
    return value


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


class _Writer:
    """COPY on PostgreSQL, multi-row INSERT elsewhere."""

    def __init__(self):
        self.pg = connection.vendor == "postgresql"

    def write(self, table: str, columns: list[str], rows: list[tuple]) -> None:
        if not rows:
            return
        cols = ", ".join(columns)
        if self.pg:
            with connection.cursor() as cursor:
                raw = cursor.cursor
                with raw.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
        else:
            marks = ", ".join(["%s"] * len(columns))
            rows = [tuple(_sqlite_value(v) for v in row) for row in rows]
            with connection.cursor() as cursor:
                cursor.executemany(f"INSERT INTO {table} ({cols}) VALUES ({marks})", rows)

    def defer_checks(self) -> None:
        """On PostgreSQL, as a superuser, skip the per-row foreign-key triggers for this
        transaction: the rows are consistent by construction (ids are assigned here, parents
        written first) and check_ledger verifies the result. Without that right, rows are
        checked as usual, only slower."""
        if not self.pg:
            return
        with connection.cursor() as cursor:
            cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            row = cursor.fetchone()
            if row and row[0]:
                cursor.execute("SET LOCAL session_replication_role = replica")

    def next_id(self, model) -> int:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT COALESCE(MAX(id), 0) + 1 FROM {model._meta.db_table}")
            return cursor.fetchone()[0]

    def reset_sequence(self, model) -> None:
        if self.pg:
            table = model._meta.db_table
            with connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT COALESCE(MAX(id), 1) FROM {table}))"
                )


MEMBER_COLUMNS = [
    "id",
    "program_id",
    "card_number",
    "email",
    "phone",
    "first_name",
    "last_name",
    "birth_date",
    "preferred_language",
    "marketing_consent",
    "marketing_consent_at",
    "status",
    "enrolled_at",
    "enrolment_channel",
    "enrolment_store_id",
    "referral_code",
    "referred_by_id",
    "tier_id",
    "points_available",
    "points_pending",
    "points_lifetime",
    "last_activity_at",
    "created_at",
    "updated_at",
]
PURCHASE_COLUMNS = [
    "id",
    "public_id",
    "program_id",
    "store_id",
    "member_id",
    "receipt_id",
    "total_amount",
    "currency",
    "occurred_at",
    "recorded_at",
    "points_earned",
    "returned_amount",
    "points_reversed",
    "breakdown",
    "release_at",
    "released_at",
    "request_hash",
    "response",
]
ENTRY_COLUMNS = [
    "id",
    "txn",
    "program_id",
    "member_id",
    "kind",
    "bucket",
    "points",
    "created_at",
    "effective_at",
    "purchase_id",
    "purchase_return_id",
    "store_id",
    "staff_user_id",
    "reason",
]


def generate_history(*, program: Program, members: int, months: int, seed: int) -> DemoStats:
    """Generate `members` members and `months` months of purchases for `program`, once.

    Reproducible: the same seed on the same day gives the same rows.
    """
    rng = random.Random(seed)
    stats = DemoStats()
    now = timezone.now().replace(microsecond=0)
    tz = program.tzinfo
    stores = list(Store.objects.filter(program=program, is_active=True).order_by("pk"))
    tiers = list(Tier.objects.filter(program=program).order_by("-rank"))
    rates = _channel_rates(program)
    store_weights = [
        0.7 / max(1, sum(s.channel == "shop" for s in stores))
        if s.channel == "shop"
        else (0.2 if s.channel == "web" else 0.1)
        for s in stores
    ]
    window = timedelta(days=program.return_window_days)
    start = now - timedelta(days=round(months * 30.44))
    month_starts = _month_starts(start, now, tz)
    writer = _Writer()
    member_id = writer.next_id(Member)
    purchase_id = writer.next_id(Purchase)
    entry_id = writer.next_id(PointsEntry)
    with transaction.atomic():
        writer.defer_checks()
        for chunk_start in range(0, members, CHUNK):
            member_rows, purchase_rows, entry_rows = [], [], []
            for i in range(chunk_start, min(members, chunk_start + CHUNK)):
                enrolled = (
                    start
                    - timedelta(days=365)
                    + timedelta(
                        seconds=rng.random() * (now - start + timedelta(days=365)).total_seconds()
                    )
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
                for m_start, m_end in month_starts:
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
                        store = rng.choices(stores, store_weights)[0]
                        member_purchases.append((at, amount, store))
                member_purchases.sort(key=lambda p: p[0])
                spend_12m = sum(
                    a for at, a, _s in member_purchases if at > now - timedelta(days=365)
                )
                tier = next((t for t in tiers if spend_12m >= t.qualify_threshold), tiers[-1])
                available = pending = lifetime = 0
                for at, amount, store in member_purchases:
                    points = int(
                        (amount * rates[store.channel] * tier.earn_multiplier).to_integral_value(
                            ROUND_FLOOR
                        )
                    )
                    released = at + window <= now
                    purchase_rows.append(
                        _purchase_row(
                            rng,
                            purchase_id,
                            program,
                            store,
                            member_id,
                            at,
                            amount,
                            points,
                            window,
                            released,
                        )
                    )
                    if points:
                        txn = uuid.UUID(int=rng.getrandbits(128), version=4)
                        entry_rows.append(
                            (
                                entry_id,
                                txn,
                                program.pk,
                                member_id,
                                "earn",
                                "pending",
                                points,
                                at,
                                at,
                                purchase_id,
                                None,
                                store.pk,
                                None,
                                "",
                            )
                        )
                        entry_id += 1
                        lifetime += points
                        if released:
                            rel = uuid.UUID(int=rng.getrandbits(128), version=4)
                            for bucket, pts in (("pending", -points), ("available", points)):
                                entry_rows.append(
                                    (
                                        entry_id,
                                        rel,
                                        program.pk,
                                        member_id,
                                        "release",
                                        bucket,
                                        pts,
                                        at + window,
                                        at + window,
                                        purchase_id,
                                        None,
                                        None,
                                        None,
                                        "",
                                    )
                                )
                                entry_id += 1
                            available += points
                        else:
                            pending += points
                    purchase_id += 1
                    stats.purchases += 1
                    for _ in range(_poisson_small(rng, ANONYMOUS_PER_MEMBER_PURCHASE)):
                        anon_at = at + timedelta(minutes=rng.randint(-600, 600))
                        if anon_at > now:
                            continue
                        purchase_rows.append(
                            _purchase_row(
                                rng,
                                purchase_id,
                                program,
                                rng.choices(stores, store_weights)[0],
                                None,
                                anon_at,
                                _amount(rng, 3.2, 1.0),
                                0,
                                window,
                                True,
                            )
                        )
                        purchase_id += 1
                        stats.anonymous_purchases += 1
                first = rng.choice(FIRST_NAMES)
                last = rng.choice(LAST_NAMES)
                consent = rng.random() < 0.55
                last_activity = member_purchases[-1][0] if member_purchases else None
                channel = rng.choices(["shop", "web", "app"], [0.7, 0.2, 0.1])[0]
                member_rows.append(
                    (
                        member_id,
                        program.pk,
                        _card(seed, i),
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
                        next((s.pk for s in stores if s.channel == channel), None),
                        _referral(seed, i),
                        None,
                        tier.pk,
                        available,
                        pending,
                        lifetime,
                        last_activity,
                        enrolled,
                        now,
                    )
                )
                member_id += 1
            # Members first: purchases and ledger rows point to them.
            writer.write(Member._meta.db_table, MEMBER_COLUMNS, member_rows)
            writer.write(Purchase._meta.db_table, PURCHASE_COLUMNS, purchase_rows)
            writer.write(PointsEntry._meta.db_table, ENTRY_COLUMNS, entry_rows)
            stats.members += len(member_rows)
            stats.entries += len(entry_rows)
        for model in (Member, Purchase, PointsEntry):
            writer.reset_sequence(model)
    return stats


def _channel_rates(program: Program) -> dict[str, Decimal]:
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
    value = max(3.0, rng.lognormvariate(mu, 0.55) * taste)
    return Decimal(f"{value:.2f}")


def _poisson_small(rng: random.Random, lam: float) -> int:
    threshold, k, p = math.exp(-lam), 0, rng.random()
    while p > threshold:
        k += 1
        p *= rng.random()
    return k


def _ascii(name: str) -> str:
    table = str.maketrans("éèêëàâîïôöûüçÉ", "eeeeaaiioouucE")
    return name.translate(table)


def _purchase_row(rng, pid, program, store, member_id, at, amount, points, window, released):
    public_id = uuid.UUID(int=rng.getrandbits(128), version=4)
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
        f'"amount":"{amount}","currency":"{program.currency}","points_earned":{points}}}'
    )
    return (
        pid,
        public_id,
        program.pk,
        store.pk,
        member_id,
        receipt,
        amount,
        program.currency,
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
