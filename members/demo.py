"""Reproducible demo history: members, a year of purchases (member and anonymous) and their
ledger, generated in bulk (PostgreSQL COPY; multi-row inserts on SQLite).

This is a bulk loader, not a business action. Its rows are what live traffic leaves behind,
with one shortcut: points of purchases whose return window has closed are loaded directly in
the available bucket (one earn row), where live traffic writes an earn in pending and a
balanced release pair; recent purchases stay pending with their release date. Each member's
cached balances are set to the sums of their rows, so `check_ledger` holds. Generated
purchases carry no lines and earn the program's channel rate times the member's tier
multiplier.
"""

import bisect
import itertools
import math
import multiprocessing
import os
import queue
import random
import threading
import zoneinfo
from collections import namedtuple
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal

from django.db import connection, transaction
from django.utils import timezone

from loyalty.models import EarningRule, Program, Store, Tier
from loyalty.processes import setup_django

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
_StoreInfo = namedtuple("_StoreInfo", "pk slug channel")
CHANNELS = ["shop", "web", "app"]
CHANNEL_CUMULATIVE = [0.7, 0.9]  # 70% shop, 20% web, 10% app


@dataclass
class DemoStats:
    members: int = 0
    purchases: int = 0
    anonymous_purchases: int = 0
    entries: int = 0


class _UUIDText(str):
    """A UUID as text (8-4-4-4-12), drawn cheaply; SQLite gets it as Django stores UUIDs."""


def _uuid4(rng: random.Random) -> _UUIDText:
    """A version-4 UUID drawn from `rng` (reproducible), as text."""
    n = rng.getrandbits(128) & ~(0xF000 << 64) | (0x4000 << 64)
    h = f"{n & ~(0xC000 << 48) | (0x8000 << 48):032x}"
    return _UUIDText(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")


_FORMATTERS = {}


def _copy_formatter(table: str):
    """A function turning one row of `table` into a line of COPY text.

    One `str.format` call per row: formatting value by value was the largest remaining cost
    of the load. Only the nullable and boolean columns need a look; the generator's strings
    (names from fixed lists, slugs, digits, JSON of numbers) never hold a tab, a newline or a
    backslash, which COPY text would need escaped.
    """
    if table in _FORMATTERS:
        return _FORMATTERS[table]
    model = {m._meta.db_table: m for m in (Member, Purchase, PointsEntry)}[table]
    columns = {
        "members_member": MEMBER_COLUMNS,
        "members_purchase": PURCHASE_COLUMNS,
        "members_pointsentry": ENTRY_COLUMNS,
    }[table]
    by_column = {f.column: f for f in model._meta.concrete_fields}
    nullable = [i for i, c in enumerate(columns) if by_column[c].null]
    booleans = [
        i for i, c in enumerate(columns) if by_column[c].get_internal_type() == "BooleanField"
    ]
    template = "\t".join(f"{{{i}}}" for i in range(len(columns))) + "\n"
    fmt = template.format

    def to_text(row):
        values = list(row)
        for i in nullable:
            if values[i] is None:
                values[i] = "\\N"
        for i in booleans:
            values[i] = "t" if values[i] else "f"
        return fmt(*values)

    _FORMATTERS[table] = to_text
    return to_text


def _sqlite_value(value):
    """Values as Django stores them in SQLite: UUIDs as hex, times as naive UTC text."""
    if isinstance(value, _UUIDText):
        return value.replace("-", "")
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
    """COPY on PostgreSQL, multi-row INSERT elsewhere.

    On PostgreSQL a writer thread streams each chunk with COPY while the caller generates the
    next one, so that the server's work overlaps Python's. It uses the same connection, inside
    the caller's transaction; the caller does not touch the connection until `close()`.
    """

    def __init__(self):
        self.pg = connection.vendor == "postgresql"
        self._queue = None
        self._thread = None
        self._error = None

    def start(self) -> None:
        if not self.pg:
            return
        connection.ensure_connection()
        raw = connection.connection
        self._queue = queue.Queue(maxsize=2)

        def run():
            while (item := self._queue.get()) is not None:
                if self._error is None:
                    try:
                        self._copy(raw, *item)
                    except BaseException as exc:  # re-raised by close()
                        self._error = exc

        self._thread = threading.Thread(target=run, name="seed-copy", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Wait until everything queued is written; raise the writer's error, if any."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        if self._error is not None:
            raise self._error

    @staticmethod
    def _copy(raw, table: str, cols: str, text: str) -> None:
        with raw.cursor() as cursor, cursor.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
            copy.write(text)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.close()

    def write(self, table: str, columns: list[str], rows) -> None:
        """Write `rows`: COPY text on PostgreSQL, a list of tuples elsewhere."""
        if not rows:
            return
        cols = ", ".join(columns)
        if self._thread is not None:
            if self._error is not None:
                self.close()
            self._queue.put((table, cols, rows))
        else:
            marks = ", ".join(["%s"] * len(columns))
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
    "tier_review_on",
    "tier_manual_until",
    "qualifying_bound",
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
    rng = random.Random(f"{plan.seed}:{chunk}")
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
        available = pending = lifetime = 0
        for at, amount, store in member_purchases:
            points = int(
                (amount * plan.rates[store.channel] * tier.earn_multiplier).to_integral_value(
                    ROUND_FLOOR
                )
            )
            released = at + plan.window <= now
            purchase_rows.append(
                _purchase_row(
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
                    (
                        entry_id,
                        _uuid4(rng),
                        plan.program_pk,
                        member_id,
                        "earn",
                        "available" if released else "pending",
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
                    available += points
                else:
                    pending += points
            purchase_id += 1
            purchases += 1
            for _ in range(_poisson_small(rng, ANONYMOUS_PER_MEMBER_PURCHASE)):
                anon_at = at + timedelta(minutes=rng.randint(-600, 600))
                if anon_at > now:
                    continue
                purchase_rows.append(
                    _purchase_row(
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
                available,
                pending,
                lifetime,
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
        payload = [(t, c, "".join(map(_copy_formatter(t), rows))) for t, c, rows in tables]
    else:
        payload = [
            (t, c, [tuple(map(_sqlite_value, row)) for row in rows]) for t, c, rows in tables
        ]
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
        _StoreInfo(*row)
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
    writer = _Writer()
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
        rates=_channel_rates(program),
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
            initializer=setup_django,
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
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
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
    value = max(3.0, math.exp(rng.gauss(mu, 0.55)) * taste)
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


def _purchase_row(rng, pid, plan, store, member_id, at, amount, points, window, released):
    public_id = _uuid4(rng)
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
