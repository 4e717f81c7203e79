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
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal

from django.db import connection, transaction
from django.utils import timezone

from loyalty import rules
from loyalty.models import Campaign, EarningRule, Program, Segment, Store, Tier
from loyalty.processes import setup_django
from loyalty.sql import dt

from .cards import REFERRAL_ALPHABET, luhn_check_digit
from .models import CampaignAward, Member, PointsEntry, Purchase
from .segments import refresh_segment

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
                cursor.executemany(f"INSERT INTO {table} ({cols}) VALUES ({marks})", rows)  # nosec B608  # table and column names from model metadata; values are parameters

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
            cursor.execute(f"SELECT COALESCE(MAX(id), 0) + 1 FROM {model._meta.db_table}")  # nosec B608  # table name from model metadata
            return cursor.fetchone()[0]

    def reset_sequence(self, model) -> None:
        if self.pg:
            table = model._meta.db_table
            with connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # nosec B608  # table name from model metadata
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
                    _earn_row(
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


def _earn_row(rng, entry_id, program_pk, member_id, points, at, purchase_id, store_pk, released):
    """The ledger row (ENTRY_COLUMNS) of a purchase's points: available when its return window
    closed before now, pending otherwise."""
    return (
        entry_id,
        _uuid4(rng),
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


# The demo's past campaign, made real --------------------------------------------------------

# The past campaign's effect on its treated members: extra visits in its dates (Poisson, per
# member) with fuller baskets than their own. Real campaigns do less (+10 to 20% visits), but
# the default demo of 300 members reaches about 95 members, 20 of them held out: an effect
# that size would be lost in the noise. With this one the frequency uplift's 95% interval
# excludes zero whatever the seed, and the revenue uplift's in about nine draws out of ten
# (at 20,000 members, always).
CAMPAIGN_EXTRA_VISITS = 1.0
CAMPAIGN_BASKET_LIFT = 1.25
_GROUPS_TABLE = "demo_campaign_groups"
_PURCHASES = Purchase._meta.db_table
_MEMBERS = Member._meta.db_table
_ENTRIES = PointsEntry._meta.db_table
_RowPlan = namedtuple("_RowPlan", "program_pk currency")


@dataclass
class CampaignHistoryStats:
    reached: int = 0
    held_out: int = 0
    awards: int = 0
    extra_purchases: int = 0
    bonus_points: int = 0
    tier_upgrades: int = 0
    segments: dict = field(default_factory=dict)


def generate_campaign_history(
    *, campaign: Campaign, segments: Sequence[Segment], seed: int
) -> CampaignHistoryStats:
    """Give an ended purchase campaign with a hold-out group the history live traffic would
    have left, once (nothing if it already has awards); then refresh `segments`.

    The members it reached are those with a purchase earning points in its dates; each is
    treated or held out by `loyalty.rules.is_held_out`, as the engine decides. Treated members
    get extra purchases in its dates (the campaign's effect, CAMPAIGN_EXTRA_VISITS per member,
    drawn with the seeded generator). Every purchase of a reached member in its dates gets a
    `CampaignAward` (0 points for the held out); a treated member's purchase gets the
    campaign's bonus as a `bonus` row of its ledger transaction, with its points, breakdown
    and stored answer to match, and cached balances move with the rows. Set-based: one pass
    in Python over the members reached, the rest is INSERT ... SELECT and UPDATE ... FROM.
    Needs a whole multiplier (a bonus of the purchase's points x (multiplier - 1)).
    """
    stats = CampaignHistoryStats()
    campaign = Campaign.objects.select_related("program").get(pk=campaign.pk)  # values as stored
    extra_factor = campaign.effect_value - 1
    if campaign.effect != Campaign.Effect.MULTIPLIER or extra_factor != int(extra_factor):
        raise ValueError("the demo's past campaign must be a whole multiplier")
    extra_factor = int(extra_factor)
    program = campaign.program
    now = timezone.now().replace(microsecond=0)
    start, end = campaign.starts_at, min(campaign.ends_at or now, now)
    window = (program.pk, dt(start), dt(end))
    in_window = (
        "p.program_id = %s AND p.member_id IS NOT NULL AND p.points_earned > 0 "
        "AND p.occurred_at >= %s AND p.occurred_at < %s"
    )
    writer = _Writer()
    with transaction.atomic():
        if CampaignAward.objects.filter(campaign=campaign).exists():
            return stats
        _analyze(Member, Purchase, PointsEntry)
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                SELECT g.member_id, g.n, g.spend, f.store_id, COALESCE(t.earn_multiplier, 1)
                FROM (SELECT p.member_id, COUNT(*) AS n, SUM(p.total_amount) AS spend,
                             MIN(p.id) AS first_id
                      FROM {_PURCHASES} p WHERE {in_window} GROUP BY p.member_id) g
                JOIN {_PURCHASES} f ON f.id = g.first_id
                JOIN {_MEMBERS} m ON m.id = g.member_id
                LEFT JOIN {Tier._meta.db_table} t ON t.id = m.tier_id
                ORDER BY g.member_id
                """,  # nosec B608  # table names and SQL built in this module; values are parameters
                window,
            )
            reached = cursor.fetchall()
            groups = [
                (row[0], rules.is_held_out(row[0], campaign.pk, campaign.holdout_percent))
                for row in reached
            ]
            stats.reached = len(groups)
            stats.held_out = sum(held for _member, held in groups)
            if connection.vendor == "postgresql":
                cursor.execute(
                    f"CREATE TEMP TABLE {_GROUPS_TABLE} (member_id bigint PRIMARY KEY, "
                    "held_out boolean NOT NULL) ON COMMIT DROP"
                )
                with cursor.copy(f"COPY {_GROUPS_TABLE} (member_id, held_out) FROM STDIN") as copy:
                    copy.write("".join(f"{m}\t{'t' if h else 'f'}\n" for m, h in groups))
            else:
                cursor.execute(
                    f"CREATE TEMP TABLE {_GROUPS_TABLE} (member_id integer PRIMARY KEY, "
                    "held_out bool NOT NULL)"
                )
                cursor.executemany(f"INSERT INTO {_GROUPS_TABLE} VALUES (%s, %s)", groups)  # nosec B608  # a constant table name; values are parameters
        purchase_base, entry_base = writer.next_id(Purchase), writer.next_id(PointsEntry)
        purchases, entries = _extra_visits(
            program, campaign, reached, dict(groups), seed, now, purchase_base, entry_base
        )
        stats.extra_purchases = len(purchases)
        writer.defer_checks()
        with writer:
            for table, columns, rows in (
                (_PURCHASES, PURCHASE_COLUMNS, purchases),
                (_ENTRIES, ENTRY_COLUMNS, entries),
            ):
                if writer.pg:
                    writer.write(table, columns, "".join(map(_copy_formatter(table), rows)))
                else:
                    writer.write(table, columns, [tuple(map(_sqlite_value, r)) for r in rows])
        for model in (Purchase, PointsEntry):
            writer.reset_sequence(model)
        _write_campaign_rows(campaign, extra_factor, in_window, window, stats)
        with connection.cursor() as cursor:
            _move_balances(cursor, program.pk, purchase_base, entry_base)
            stats.tier_upgrades = _upgrade_tiers(cursor, program, purchase_base, now, seed)
            cursor.execute(f"DROP TABLE IF EXISTS {_GROUPS_TABLE}")
    _analyze(CampaignAward)
    for segment in segments:
        stats.segments[segment.name] = refresh_segment(segment, now=now)
    return stats


def _analyze(*models) -> None:
    """On PostgreSQL, refresh the planner's statistics of tables that a bulk load just filled:
    until autovacuum gets to them (if it runs at all), the planner takes a table of a million
    rows for an empty one and picks nested loops that take minutes."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE " + ", ".join(m._meta.db_table for m in models))


def _extra_visits(program, campaign, reached, held_out, seed, now, purchase_id, entry_id):
    """The treated members' extra purchases in the campaign's dates and their earn rows, as
    the generator writes them: at one of the member's stores, around the member's basket, the
    channel's rate x the member's tier multiplier."""
    rng = random.Random(f"{seed}:campaign")  # nosec B311  # seeded generator for reproducible demo data, not security
    stores = {
        row[0]: _StoreInfo(*row)
        for row in Store.objects.filter(program=program).values_list("pk", "slug", "channel")
    }
    rates = _channel_rates(program)
    plan = _RowPlan(program.pk, program.currency)
    window = timedelta(days=program.return_window_days)
    start, end = campaign.starts_at, min(campaign.ends_at or now, now)
    span = (end - start).total_seconds()
    purchases, entries = [], []
    for member_id, count, spend, store_id, multiplier in reached:
        if held_out[member_id]:
            continue
        store = stores[store_id]
        basket = float(spend) / count
        for _ in range(_poisson_small(rng, CAMPAIGN_EXTRA_VISITS)):
            at = (start + timedelta(seconds=rng.random() * span)).replace(microsecond=0)
            amount = basket * CAMPAIGN_BASKET_LIFT * rng.lognormvariate(0, 0.3)
            amount = Decimal(f"{max(3.0, amount):.2f}")
            points = int(
                (amount * rates[store.channel] * Decimal(str(multiplier))).to_integral_value(
                    ROUND_FLOOR
                )
            )
            released = at + window <= now
            purchases.append(
                _purchase_row(
                    rng, purchase_id, plan, store, member_id, at, amount, points, window, released
                )
            )
            if points:
                entries.append(
                    _earn_row(
                        rng,
                        entry_id,
                        program.pk,
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
    return purchases, entries


def _write_campaign_rows(campaign, extra_factor, in_window, window, stats) -> None:
    """The awards of every purchase of the reached members in the campaign's dates, then the
    treated ones' bonus rows (in the ledger transaction of the purchase's earn row), points,
    breakdown and stored answer."""
    groups = f"JOIN {_GROUPS_TABLE} g ON g.member_id = p.member_id"
    earn = f"JOIN {_ENTRIES} e ON e.purchase_id = p.id AND e.kind = 'earn'"
    if connection.vendor == "postgresql":
        item = (
            "breakdown || jsonb_build_array(jsonb_build_object('code', 'campaign', "
            "'name', %s::text, 'factor', %s::text, 'amount', total_amount::text, "
            "'points', points_earned * %s, 'rule_id', %s::integer))"
        )
    else:
        item = (
            "json_insert(breakdown, '$[#]', json_object('code', 'campaign', 'name', %s, "
            "'factor', %s, 'amount', printf('%%.2f', total_amount), "
            "'points', points_earned * %s, 'rule_id', %s))"
        )
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {CampaignAward._meta.db_table}
                (program_id, campaign_id, member_id, purchase_id, store_id, occasion, points,
                 is_held_out, occurred_at, txn)
            SELECT p.program_id, %s, p.member_id, p.id, p.store_id, '',
                   CASE WHEN g.held_out THEN 0 ELSE e.points * %s END, g.held_out,
                   p.occurred_at, CASE WHEN g.held_out THEN NULL ELSE e.txn END
            FROM {_PURCHASES} p {groups} {earn}
            WHERE {in_window}
            """,  # nosec B608  # table names and SQL built in this module; values are parameters
            [campaign.pk, extra_factor, *window],
        )
        stats.awards = cursor.rowcount
        cursor.execute(
            f"""
            INSERT INTO {_ENTRIES}
                (txn, program_id, member_id, kind, bucket, points, created_at, effective_at,
                 purchase_id, store_id, reason)
            SELECT e.txn, e.program_id, e.member_id, 'bonus', e.bucket, e.points * %s,
                   e.created_at, e.effective_at, e.purchase_id, e.store_id, ''
            FROM {_PURCHASES} p {groups} {earn}
            WHERE NOT g.held_out AND {in_window}
            """,  # nosec B608  # table names and SQL built in this module; values are parameters
            [extra_factor, *window],
        )
        cursor.execute(
            f"""
            UPDATE {_PURCHASES} SET
                points_earned = points_earned * %s,
                breakdown = {item},
                response = replace(response, '"points_earned":' || points_earned || '}}',
                                   '"points_earned":' || (points_earned * %s) || '}}')
            FROM (SELECT p.id FROM {_PURCHASES} p {groups}
                  WHERE NOT g.held_out AND {in_window}) t
            WHERE {_PURCHASES}.id = t.id
            """,  # nosec B608  # table names and SQL built in this module; values are parameters
            [
                extra_factor + 1,
                campaign.name,
                str(campaign.effect_value),
                extra_factor,
                campaign.pk,
                extra_factor + 1,
                *window,
            ],
        )
        cursor.execute(
            f"SELECT COALESCE(SUM(points), 0) FROM {CampaignAward._meta.db_table} "  # nosec B608  # table name from model metadata; values are parameters
            "WHERE campaign_id = %s",
            [campaign.pk],
        )
        stats.bonus_points = cursor.fetchone()[0]


def _move_balances(cursor, program_id, purchase_base, entry_base) -> None:
    """In one UPDATE: the cached balances moved by the ledger rows this step appended (ids from
    `entry_base`), and the extra purchases' activity and qualifying spend (ids from
    `purchase_base`; the bound stays an upper bound). Every extra purchase has an earn row."""
    cursor.execute(
        f"""
        UPDATE {_MEMBERS} SET
            points_available = points_available + d.available,
            points_pending = points_pending + d.pending,
            points_lifetime = points_lifetime + d.lifetime,
            qualifying_bound = qualifying_bound + COALESCE(x.spend, 0),
            last_activity_at = CASE
                WHEN x.last_at IS NOT NULL
                     AND (last_activity_at IS NULL OR last_activity_at < x.last_at)
                THEN x.last_at ELSE last_activity_at END
        FROM (SELECT member_id,
                     SUM(CASE WHEN bucket = 'available' THEN points ELSE 0 END) AS available,
                     SUM(CASE WHEN bucket = 'pending' THEN points ELSE 0 END) AS pending,
                     SUM(CASE WHEN kind IN ('earn', 'bonus', 'return') THEN points ELSE 0 END)
                         AS lifetime
              FROM {_ENTRIES} WHERE program_id = %s AND id >= %s GROUP BY member_id) d
        LEFT JOIN (SELECT member_id, SUM(total_amount) AS spend, MAX(occurred_at) AS last_at
                   FROM {_PURCHASES} WHERE program_id = %s AND id >= %s GROUP BY member_id) x
            ON x.member_id = d.member_id
        WHERE {_MEMBERS}.id = d.member_id
        """,  # nosec B608  # table names from model metadata; values are parameters
        [program_id, entry_base, program_id, purchase_base],
    )


def _upgrade_tiers(cursor, program, purchase_base, now, seed) -> int:
    """Members whose extra purchases (ids from `purchase_base`) lift their spend over the last
    365 days to a higher tier's threshold get that tier, as the generator assigns tiers (a
    review within the coming year), so the history stays one the nightly jobs only confirm.
    Upgrades only: spend was added. Returns how many."""
    tiers = list(
        Tier.objects.filter(program=program)
        .order_by("-rank")
        .values_list("pk", "rank", "qualify_threshold")
    )
    if not tiers:
        return 0
    ranks = {pk: rank for pk, rank, _threshold in tiers}
    cursor.execute(
        f"""
        SELECT p.member_id, m.tier_id, SUM(p.total_amount)
        FROM {_PURCHASES} p JOIN {_MEMBERS} m ON m.id = p.member_id
        WHERE p.program_id = %s AND p.occurred_at > %s AND p.member_id IN (
            SELECT member_id FROM {_PURCHASES} WHERE program_id = %s AND id >= %s)
        GROUP BY p.member_id, m.tier_id
        ORDER BY p.member_id
        """,  # nosec B608  # table names from model metadata; values are parameters
        [program.pk, dt(now - timedelta(days=365)), program.pk, purchase_base],
    )
    rng = random.Random(f"{seed}:campaign-tiers")  # nosec B311  # seeded generator for reproducible demo data, not security
    today = timezone.localtime(now, program.tzinfo).date()
    upgrades = []
    for member_id, tier_id, spend in cursor.fetchall():
        spend = Decimal(str(spend))
        pk, rank, _threshold = next((t for t in tiers if spend >= t[2]), tiers[-1])
        if tier_id is None or rank > ranks[tier_id]:
            upgrades.append((pk, today + timedelta(days=rng.randint(1, 365)), member_id))
    if upgrades:
        cursor.executemany(
            f"UPDATE {_MEMBERS} SET tier_id = %s, tier_review_on = %s WHERE id = %s",  # nosec B608  # table name from model metadata; values are parameters
            upgrades,
        )
    return len(upgrades)
