"""The nightly member jobs (members/jobs.py): release of pending points, expiry (first in first
out after earning, or after inactivity), notifications, idempotence, a crash half way and its
re-run, dry runs, the management commands, and a year of simulated nights.

Time is driven by a fake clock (`clock`): `django.utils.timezone.now` returns what the test
says, so purchases, adjustments and job runs happen on the dates a test chooses, and the jobs
are given the same `now`.
"""

import io
import json
import smtplib
from collections import defaultdict
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.core.mail.backends.base import BaseEmailBackend
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Sum
from django.utils import timezone

from config import nightly
from loyalty.models import JobRun
from members import ledger, services
from members.ledger import find_mismatches
from members.models import Member, MemberNotification, PointsEntry, Purchase, TierChange
from members.selectors import expiry_schedule, member_progress
from members.tiers import add_months
from tests.factories import (
    ProgramFactory,
    StaffUserFactory,
    StoreFactory,
    TierFactory,
    enrol,
    record_member_purchase,
)

pytestmark = pytest.mark.django_db

PARIS = ZoneInfo("Europe/Paris")
LOCMEM = "django.core.mail.backends.locmem.EmailBackend"


# Helpers --------------------------------------------------------------------------------------


class Clock:
    def __init__(self):
        self.now = timezone.now()

    def set(self, moment: datetime) -> datetime:
        assert timezone.is_aware(moment)
        self.now = moment
        return moment


@pytest.fixture
def clock(monkeypatch):
    """A fake `timezone.now`, set by the test (modules call `timezone.now()` at run time)."""
    fake = Clock()
    monkeypatch.setattr(timezone, "now", lambda: fake.now)
    return fake


@pytest.fixture
def staff(db):
    return StaffUserFactory()


def at(day: date, hour: int = 12, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=PARIS)


def night(day: date) -> datetime:
    """The nightly run of local date `day`: 03:00 in Paris."""
    return at(day, 3)


def make_program(**kwargs):
    kwargs.setdefault("return_window_days", 10)
    kwargs.setdefault("backdating_days", 400)
    program = ProgramFactory(**kwargs)
    TierFactory(program=program, name="Bronze", rank=0)
    store = StoreFactory(program=program)
    return program, store


_receipts = iter(range(1, 10**9))


def buy(clock, store, member, amount, when: datetime, receipt=None) -> Purchase:
    """A purchase recorded through the service at `when` (the clock is set there)."""
    clock.set(when)
    receipt = receipt or f"R-{next(_receipts)}"
    record_member_purchase(store, member, receipt, amount, when)
    return Purchase.objects.get(store=store, receipt_id=receipt)


def give_back(clock, store, purchase, amount, when: datetime):
    clock.set(when)
    services.record_return(
        store=store,
        receipt_id=purchase.receipt_id,
        return_id=f"RET-{next(_receipts)}",
        amount=Decimal(amount),
        occurred_at=when,
    )


def spend(clock, member, points, when: datetime, staff):
    clock.set(when)
    services.adjust_points(member=member, points=-points, reason="redeemed", staff_user=staff)


def run(clock, name, moment: datetime, program=None, **kwargs):
    clock.set(moment)
    programs = [program] if program is not None else None
    summary = nightly.run_job(name, now=moment, programs=programs, **kwargs)
    return summary[program.slug] if program is not None else summary


def balances(member):
    member.refresh_from_db()
    return member.points_available, member.points_pending


def expired_by_night(member) -> dict[date, int]:
    """Points expired per local night, from the ledger."""
    out = {}
    for row in PointsEntry.objects.filter(member=member, kind="expire").order_by("pk"):
        day = timezone.localtime(row.effective_at, PARIS).date()
        out[day] = out.get(day, 0) - row.points
    return out


def days(start: date, end: date):
    day = start
    while day <= end:
        yield day
        day += timedelta(days=1)


def simulate(clock, start, end, events, *, program=None, names=None):
    """For each local date from `start` to `end`: the nightly run at 03:00 (every job, or
    `names`), then that day's events (callables) at their own times."""
    for day in days(start, end):
        moment = clock.set(night(day))
        if names is None:
            nightly.run_nightly(now=moment)
        else:
            for name in names:
                run(clock, name, moment, program)
        for event in events.get(day, ()):
            event()


def ledger_counts():
    return {
        "entries": PointsEntry.objects.count(),
        "tier_changes": TierChange.objects.count(),
        "notifications": MemberNotification.objects.count(),
        "sent": MemberNotification.objects.filter(sent_at__isnull=False).count(),
        "balances": list(
            Member.objects.order_by("pk").values_list(
                "pk", "points_available", "points_pending", "points_lifetime", "tier_id"
            )
        ),
    }


def member_ledger(member) -> dict[tuple[str, str], int]:
    return {
        (row["kind"], row["bucket"]): row["total"]
        for row in PointsEntry.objects.filter(member=member)
        .values("kind", "bucket")
        .annotate(total=Sum("points"))
    }


# 1. Release of pending points -----------------------------------------------------------------


def test_points_stay_pending_until_release_at_and_are_released_net_of_returns(clock):
    program, store = make_program(return_window_days=30)
    clock.set(at(date(2026, 3, 1), 9))
    member = enrol(program, email="ana@example.com")
    purchase = buy(clock, store, member, "100.00", at(date(2026, 3, 1), 10))
    assert purchase.release_at == at(date(2026, 3, 1), 10) + timedelta(days=30)
    assert balances(member) == (0, 100)

    give_back(clock, store, purchase, "25.00", at(date(2026, 3, 10)))
    assert balances(member) == (0, 75)

    release_at = purchase.release_at
    early = run(clock, "release_pending_points", release_at - timedelta(seconds=1), program)
    assert early["purchases"] == 0
    assert early["points"] == 0
    assert balances(member) == (0, 75)
    assert not PointsEntry.objects.filter(kind="release").exists()

    summary = run(clock, "release_pending_points", release_at, program)
    assert summary["purchases"] == 1
    assert summary["members"] == 1
    assert summary["points"] == 75
    assert balances(member) == (75, 0)

    rows = list(PointsEntry.objects.filter(kind="release").order_by("bucket"))
    assert [(r.bucket, r.points) for r in rows] == [("available", 75), ("pending", -75)]
    assert rows[0].txn == rows[1].txn
    assert {r.purchase_id for r in rows} == {purchase.pk}
    assert {r.store_id for r in rows} == {store.pk}
    assert {r.effective_at for r in rows} == {release_at}
    purchase.refresh_from_db()
    assert purchase.released_at == release_at
    member.refresh_from_db()
    assert member.points_lifetime == 75

    again = run(clock, "release_pending_points", release_at + timedelta(hours=1), program)
    assert again["purchases"] == 0
    assert again["points"] == 0
    assert PointsEntry.objects.filter(kind="release").count() == 2
    assert balances(member) == (75, 0)
    assert find_mismatches() == []


def test_a_fully_returned_purchase_releases_nothing_but_is_closed(clock):
    program, store = make_program(return_window_days=5)
    clock.set(at(date(2026, 3, 1), 9))
    member = enrol(program, email="ana@example.com")
    purchase = buy(clock, store, member, "40.00", at(date(2026, 3, 1), 10))
    give_back(clock, store, purchase, "40.00", at(date(2026, 3, 2)))

    summary = run(clock, "release_pending_points", night(date(2026, 3, 7)), program)
    assert summary["points"] == 0
    assert not PointsEntry.objects.filter(kind="release").exists()
    purchase.refresh_from_db()
    assert purchase.released_at is not None
    assert balances(member) == (0, 0)
    assert find_mismatches() == []


def test_release_only_touches_the_programs_it_is_given(clock):
    program, store = make_program(return_window_days=5)
    other, other_store = make_program(return_window_days=5)
    clock.set(at(date(2026, 3, 1), 9))
    mine, theirs = enrol(program, email="a@example.com"), enrol(other, email="b@example.com")
    buy(clock, store, mine, "10.00", at(date(2026, 3, 1), 10))
    buy(clock, other_store, theirs, "20.00", at(date(2026, 3, 1), 10))

    run(clock, "release_pending_points", night(date(2026, 3, 8)), program)
    assert balances(mine) == (10, 0)
    assert balances(theirs) == (0, 20)


# 2. Expiry ------------------------------------------------------------------------------------


def test_fifo_expiry_expires_exactly_the_oldest_points_on_the_right_nights(clock, staff):
    program, store = make_program(
        return_window_days=10, expiry_policy="after_earning", expiry_months=6
    )
    clock.set(at(date(2026, 1, 5)))
    member = enrol(program, email="ana@example.com")
    debtor = enrol(program, email="bob@example.com")
    events = {
        # Lot of 10 January: 100 points (released on the night of 21 January).
        date(2026, 1, 10): [lambda: buy(clock, store, member, "100.00", at(date(2026, 1, 10)))],
        # Spent 30 (from the January lot: 70 left of it).
        date(2026, 3, 1): [lambda: spend(clock, member, 30, at(date(2026, 3, 1)), staff)],
        # Lot of 20 March: 40 points.
        date(2026, 3, 20): [lambda: buy(clock, store, member, "40.00", at(date(2026, 3, 20)))],
    }
    feb = {}

    def february():
        feb["purchase"] = buy(clock, store, member, "50.00", at(date(2026, 2, 15)))

    events[date(2026, 2, 15)] = [february]
    # A return after the release takes 20 available points: FIFO, from the January lot.
    events[date(2026, 4, 5)] = [
        lambda: give_back(clock, store, feb["purchase"], "20.00", at(date(2026, 4, 5)))
    ]
    # The debtor: 30 earned, 50 spent: -20, which never expires.
    events[date(2026, 1, 11)] = [lambda: buy(clock, store, debtor, "30.00", at(date(2026, 1, 11)))]
    events[date(2026, 2, 1)] = [lambda: spend(clock, debtor, 50, at(date(2026, 2, 1)), staff)]

    names = ("release_pending_points", "expire_points")
    simulate(clock, date(2026, 1, 6), date(2026, 6, 1), events, program=program, names=names)
    assert balances(member) == (140, 0)
    assert expired_by_night(member) == {}

    # What the member is told, before any of it expires.
    member.refresh_from_db()
    expected = [(date(2026, 7, 10), 50), (date(2026, 8, 15), 50), (date(2026, 9, 20), 40)]
    assert expiry_schedule(member, date(2026, 6, 1)) == expected
    progress = member_progress(member, now=at(date(2026, 6, 1)))
    assert progress["expiring"] == [{"date": d.isoformat(), "points": p} for d, p in expected]
    assert progress["expiring_within_30_days"] == 0
    assert member_progress(member, now=at(date(2026, 6, 10)))["expiring_within_30_days"] == 50

    simulate(clock, date(2026, 6, 2), date(2026, 9, 30), {}, program=program, names=names)
    assert expired_by_night(member) == dict(expected)
    assert balances(member) == (0, 0)
    assert expired_by_night(debtor) == {}
    assert balances(debtor) == (-20, 0)
    assert (
        list(PointsEntry.objects.filter(kind="expire").values_list("reason", flat=True))
        == ["fifo"] * 3
    )
    assert find_mismatches() == []


def test_fifo_expiry_of_points_earned_at_a_month_end(clock):
    """Points earned on 31 August with 6 months expire on add_months(31 Aug, 6) = 28 February,
    the date the member is shown."""
    program, store = make_program(
        return_window_days=0, expiry_policy="after_earning", expiry_months=6
    )
    clock.set(at(date(2026, 8, 1)))
    member = enrol(program, email="ana@example.com")
    buy(clock, store, member, "31.00", at(date(2026, 8, 31)))
    buy(clock, store, member, "30.00", at(date(2026, 8, 30)), receipt="R-AUG-30")
    member.refresh_from_db()
    assert expiry_schedule(member, date(2026, 9, 1)) == [(date(2027, 2, 28), 61)]

    assert run(clock, "expire_points", night(date(2027, 2, 27)), program)["points"] == 0
    assert run(clock, "expire_points", night(date(2027, 2, 28)), program)["points"] == 61
    assert run(clock, "expire_points", night(date(2027, 3, 1)), program)["points"] == 0
    assert expired_by_night(member) == {date(2027, 2, 28): 61}


def test_inactivity_expiry_takes_the_whole_balance_after_m_months_and_a_purchase_resets_it(
    clock,
):
    program, store = make_program(
        return_window_days=0, expiry_policy="after_inactivity", expiry_months=3
    )
    clock.set(at(date(2026, 1, 5)))
    idle = enrol(program, email="idle@example.com")
    busy = enrol(program, email="busy@example.com")
    buy(clock, store, idle, "60.00", at(date(2026, 1, 10)))
    buy(clock, store, idle, "40.00", at(date(2026, 1, 10), 15))
    buy(clock, store, busy, "100.00", at(date(2026, 1, 10)))
    buy(clock, store, busy, "50.00", at(date(2026, 3, 1)))

    idle.refresh_from_db()
    busy.refresh_from_db()
    assert expiry_schedule(idle, date(2026, 3, 2)) == [(date(2026, 4, 10), 100)]
    assert expiry_schedule(busy, date(2026, 3, 2)) == [(date(2026, 6, 1), 150)]

    assert run(clock, "expire_points", night(date(2026, 4, 9)), program)["points"] == 0
    summary = run(clock, "expire_points", night(date(2026, 4, 10)), program)
    assert summary == {
        "night": "2026-04-10",
        "policy": "after_inactivity",
        "members": 1,
        "points": 100,
        "batches": 1,
    }
    assert balances(idle) == (0, 0)
    assert balances(busy) == (150, 0)
    assert run(clock, "expire_points", night(date(2026, 4, 11)), program)["points"] == 0

    assert run(clock, "expire_points", night(date(2026, 5, 31)), program)["points"] == 0
    assert run(clock, "expire_points", night(date(2026, 6, 1)), program)["points"] == 150
    assert expired_by_night(idle) == {date(2026, 4, 10): 100}
    assert expired_by_night(busy) == {date(2026, 6, 1): 150}
    assert set(PointsEntry.objects.filter(kind="expire").values_list("reason", flat=True)) == {
        "inactivity"
    }
    assert find_mismatches() == []


def test_no_expiry_policy_expires_nothing(clock):
    program, store = make_program(return_window_days=0)
    clock.set(at(date(2024, 1, 5)))
    member = enrol(program, email="ana@example.com")
    buy(clock, store, member, "10.00", at(date(2024, 1, 10)))
    summary = run(clock, "expire_points", night(date(2026, 1, 10)), program)
    assert summary["points"] == 0
    assert summary["policy"] == "none"
    assert balances(member) == (10, 0)


# 3. Idempotence -------------------------------------------------------------------------------


@pytest.fixture
def busy_night(clock, staff):
    """A program where the night of 1 March 2026 has something for every job: a release, an
    expiry, a tier upgrade (tier created after the purchases) and emails."""
    program, store = make_program(
        return_window_days=10, expiry_policy="after_earning", expiry_months=1
    )
    clock.set(at(date(2026, 1, 5)))
    members = [
        enrol(program, email=f"m{i}@example.com", preferred_language=("fr", "en")[i % 2])
        for i in range(4)
    ]
    for i, member in enumerate(members):
        buy(clock, store, member, f"{100 + 10 * i}.00", at(date(2026, 1, 20)))
        buy(clock, store, member, "30.00", at(date(2026, 2, 15)))
    nightly.run_job("release_pending_points", now=clock.set(night(date(2026, 2, 1))))
    TierFactory(program=program, name="Silver", rank=1, qualify_threshold=Decimal("145"))
    return program, members


def test_run_nightly_twice_at_the_same_moment_does_nothing_the_second_time(
    clock, busy_night, mailoutbox
):
    program, _members = busy_night
    moment = clock.set(night(date(2026, 3, 1)))
    first = nightly.run_nightly(now=moment)
    assert first["expire_points"][program.slug]["points"] > 0
    assert first["requalify_tiers"][program.slug]["upgrades"] == 2
    assert first["notify_members"][program.slug]["sent"] > 0
    after_first = ledger_counts()
    emails = len(mailoutbox)
    assert emails == first["notify_members"][program.slug]["sent"]

    second = nightly.run_nightly(now=moment)
    assert ledger_counts() == after_first
    assert len(mailoutbox) == emails
    assert second["release_pending_points"][program.slug]["points"] == 0
    assert second["expire_points"][program.slug]["points"] == 0
    assert second["requalify_tiers"][program.slug]["upgrades"] == 0
    assert second["notify_members"][program.slug] == {
        "night": "2026-03-01",
        "expiring_claimed": 0,
        "tier_claimed": 0,
        "sent": 0,
        "failed": 0,
    }
    # And a later run the same night as well.
    nightly.run_nightly(now=clock.set(moment + timedelta(hours=2)))
    assert ledger_counts() == after_first
    assert len(mailoutbox) == emails
    assert find_mismatches() == []
    assert JobRun.objects.filter(status="succeeded").count() == len(nightly.NIGHTLY_ORDER) * 3 + 1


# 4. A crash half way, and the re-run ----------------------------------------------------------


def _crash_data(clock, program, store):
    clock.set(at(date(2026, 1, 5)))
    members = [enrol(program, email=f"c{i}@example.com") for i in range(5)]
    for i, member in enumerate(members):
        buy(clock, store, member, f"{10 * (i + 1)}.00", at(date(2026, 1, 10)))
        buy(clock, store, member, "7.00", at(date(2026, 1, 12)))
    return members


class Boom(RuntimeError):
    pass


@pytest.mark.parametrize(
    ("job", "moment", "before"),
    [
        ("release_pending_points", night(date(2026, 1, 25)), []),
        (
            "expire_points",
            night(date(2026, 2, 11)),
            [("release_pending_points", night(date(2026, 1, 25)))],
        ),
    ],
)
def test_a_run_that_crashes_after_one_batch_is_recorded_and_completed_by_the_rerun(
    clock, monkeypatch, job, moment, before
):
    options = {"return_window_days": 10, "expiry_policy": "after_earning", "expiry_months": 1}
    crashed, crashed_store = make_program(**options)
    clean, clean_store = make_program(**options)
    crashed_members = _crash_data(clock, crashed, crashed_store)
    clean_members = _crash_data(clock, clean, clean_store)
    for name, when in before:
        for program in (crashed, clean):
            run(clock, name, when, program)

    real_post_many = ledger.post_many
    calls = []

    def failing_post_many(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise Boom("disk full")
        return real_post_many(*args, **kwargs)

    monkeypatch.setattr(ledger, "post_many", failing_post_many)
    with pytest.raises(Boom):
        run(clock, job, moment, crashed, batch_size=2)
    monkeypatch.setattr(ledger, "post_many", real_post_many)

    failed = JobRun.objects.get(name=f"members.{job}", status="failed")
    assert "disk full" in failed.error
    assert "Boom" in failed.error
    assert failed.finished_at is not None
    assert not failed.is_dry_run
    # The first batch (two members) is written whole, the second not at all.
    kind = "release" if job == "release_pending_points" else "expire"
    touched = set(
        PointsEntry.objects.filter(program=crashed, kind=kind).values_list("member_id", flat=True)
    )
    assert touched == {crashed_members[0].pk, crashed_members[1].pk}
    assert find_mismatches() == []

    rerun = run(clock, job, moment, crashed, batch_size=2)
    assert rerun["batches"] == 2  # the three members left, in batches of two
    reference = run(clock, job, moment, clean, batch_size=2)
    assert reference["batches"] == 3
    assert (
        rerun["points"]
        + sum(
            -p if kind == "expire" else p
            for p in PointsEntry.objects.filter(
                program=crashed, kind=kind, member__in=crashed_members[:2], bucket="available"
            ).values_list("points", flat=True)
        )
        == reference["points"]
    )

    for mine, theirs in zip(crashed_members, clean_members, strict=True):
        mine.refresh_from_db()
        theirs.refresh_from_db()
        assert (mine.points_available, mine.points_pending, mine.points_lifetime) == (
            theirs.points_available,
            theirs.points_pending,
            theirs.points_lifetime,
        )
        assert member_ledger(mine) == member_ledger(theirs)
        assert PointsEntry.objects.filter(member=mine).count() == (
            PointsEntry.objects.filter(member=theirs).count()
        )
    assert find_mismatches() == []
    assert JobRun.objects.filter(name=f"members.{job}", status="failed").count() == 1


# 5. Dry run -----------------------------------------------------------------------------------


def test_a_dry_run_reports_counts_and_writes_nothing(clock, busy_night, mailoutbox):
    program, members = busy_night
    moment = clock.set(night(date(2026, 3, 1)))
    before = ledger_counts()

    dry = nightly.run_nightly(now=moment, dry_run=True)
    assert ledger_counts() == before
    assert mailoutbox == []
    assert dry["release_pending_points"][program.slug]["points"] == 30 * len(members)
    assert dry["expire_points"][program.slug]["members"] == 4
    assert dry["notify_members"][program.slug]["sent"] == 0
    runs = JobRun.objects.filter(started_at__gte=moment)
    assert runs.count() == len(nightly.NIGHTLY_ORDER)
    assert all(r.is_dry_run and r.status == "succeeded" for r in runs)

    real = nightly.run_nightly(now=moment)
    for name in ("release_pending_points", "expire_points", "requalify_tiers"):
        assert real[name] == dry[name], name
    assert (
        dry["notify_members"][program.slug]["expiring_claimed"]
        == real["notify_members"][program.slug]["expiring_claimed"]
    )


def test_the_dry_run_option_of_the_commands(clock, busy_night, mailoutbox):
    program, _members = busy_night
    moment = clock.set(night(date(2026, 3, 1)))
    before = ledger_counts()
    out = io.StringIO()
    call_command("run_nightly", "--dry-run", "--at", moment.isoformat(), stdout=out)
    text = out.getvalue()
    assert text.startswith("dry run: nothing was written")
    result = json.loads(text.split("\n", 1)[1])
    assert result["expire_points"][program.slug]["members"] == 4
    assert result["requalify_tiers"][program.slug]["upgrades"] == 2
    assert ledger_counts() == before
    assert mailoutbox == []
    assert set(JobRun.objects.values_list("is_dry_run", flat=True).filter(started_at=moment)) == {
        True
    }

    out = io.StringIO()
    call_command("expire_points", "--dry-run", "--at", moment.isoformat(), stdout=out)
    result = json.loads(out.getvalue().split("\n", 1)[1])
    assert result[program.slug]["points"] > 0
    assert ledger_counts() == before


# 6. Notifications -----------------------------------------------------------------------------


@pytest.fixture
def expiring(clock):
    """Points earned on 10 January 2026 expire on 10 July (6 months): warned from 10 June."""
    program, store = make_program(
        name="Club Lumière", return_window_days=0, expiry_policy="after_earning", expiry_months=6
    )
    clock.set(at(date(2026, 1, 5)))
    people = {
        "fr": enrol(program, email="claire@example.fr", first_name="Claire"),
        "en": enrol(program, email="jane@example.com", first_name="Jane", preferred_language="en"),
        "no_email": enrol(program, phone="+33600000001"),
        "suspended": enrol(program, email="sus@example.com"),
    }
    for member in people.values():
        buy(clock, store, member, "100.00", at(date(2026, 1, 10)))
    Member.objects.filter(pk=people["suspended"].pk).update(status=Member.Status.SUSPENDED)
    return program, store, people


def test_expiring_points_email_once_a_month_in_the_members_language(clock, expiring, mailoutbox):
    program, _store, people = expiring
    assert run(clock, "notify_members", night(date(2026, 6, 9)), program)["sent"] == 0
    summary = run(clock, "notify_members", night(date(2026, 6, 10)), program)
    assert summary["expiring_claimed"] == 2
    assert summary["sent"] == 2
    by_address = {m.to[0]: m for m in mailoutbox}
    assert set(by_address) == {"claire@example.fr", "jane@example.com"}

    english = by_address["jane@example.com"]
    assert english.subject == "Club Lumière: some of your points expire soon"
    assert "Hello Jane," in english.body
    assert "100 of your points will expire by July 10, 2026" in english.body
    assert people["en"].card_number in english.body
    (html, mimetype), *_ = english.alternatives
    assert mimetype == "text/html"
    assert "Jane" in html
    assert "100" in html

    french = by_address["claire@example.fr"]
    assert "10 juillet 2026" in french.body  # dates in the member's language
    (html, mimetype), *_ = french.alternatives
    assert mimetype == "text/html"
    assert "juillet" in html

    rows = MemberNotification.objects.filter(kind="points_expiring")
    assert {(r.member_id, r.key, r.attempts) for r in rows} == {
        (people["fr"].pk, "2026-06", 1),
        (people["en"].pk, "2026-06", 1),
    }
    assert all(r.sent_at == night(date(2026, 6, 10)) for r in rows)
    assert rows.first().context == {"points": 100, "by": "2026-07-10"}

    # Not again this month; again in July (the points still expire on 10 July).
    for day in (11, 20, 30):
        assert run(clock, "notify_members", night(date(2026, 6, day)), program)["sent"] == 0
    assert len(mailoutbox) == 2
    assert run(clock, "notify_members", night(date(2026, 7, 1)), program)["sent"] == 2
    assert len(mailoutbox) == 4
    # Once expired, nothing left to warn about.
    run(clock, "expire_points", night(date(2026, 7, 10)), program)
    assert run(clock, "notify_members", night(date(2026, 8, 1)), program)["sent"] == 0


def test_the_french_email_is_in_french(clock, expiring, mailoutbox):
    program, _store, _people = expiring
    run(clock, "notify_members", night(date(2026, 6, 10)), program)
    french = next(m for m in mailoutbox if m.to == ["claire@example.fr"])
    assert french.subject == "Club Lumière\xa0: une partie de vos points expire bientôt"
    assert "Bonjour Claire," in french.body
    assert "100 de vos points expireront d\u2019ici le 10 juillet 2026" in french.body
    assert "Hello" not in french.body
    assert "expire soon" not in french.body
    html = french.alternatives[0][0]
    assert "Bonjour Claire" in html
    assert "Hello" not in html


def test_tier_changed_email_once_per_change(clock, mailoutbox):
    program, store = make_program(return_window_days=0)
    TierFactory(program=program, name="Silver", rank=1, qualify_threshold=Decimal("100"))
    clock.set(at(date(2026, 3, 1)))
    member = enrol(program, email="jane@example.com", first_name="Jane", preferred_language="en")
    mute = enrol(program, phone="+33600000002")
    claire = enrol(program, email="claire@example.fr", first_name="Claire")
    buy(clock, store, claire, "120.00", at(date(2026, 3, 1)))
    buy(clock, store, member, "150.00", at(date(2026, 3, 1)))
    buy(clock, store, mute, "150.00", at(date(2026, 3, 1)))
    assert TierChange.objects.filter(reason="purchase").count() == 3

    summary = run(clock, "notify_members", night(date(2026, 3, 2)), program)
    assert summary["tier_claimed"] == 2
    assert summary["sent"] == 2
    by_address = {m.to[0]: m for m in mailoutbox}
    assert set(by_address) == {"jane@example.com", "claire@example.fr"}
    english = by_address["jane@example.com"]
    assert english.subject == f"{program.name}: your tier has changed"
    assert "from Bronze to Silver" in english.body
    assert english.alternatives[0][1] == "text/html"
    french = by_address["claire@example.fr"]
    assert french.subject == f"{program.name}\xa0: votre niveau a changé"
    assert "Votre niveau est passé de Bronze à Silver." in french.body
    assert french.alternatives[0][1] == "text/html"

    assert run(clock, "notify_members", night(date(2026, 3, 3)), program)["sent"] == 0
    assert len(mailoutbox) == 2
    keys = set(MemberNotification.objects.values_list("key", flat=True))
    told = TierChange.objects.exclude(member=mute).values_list("pk", flat=True)
    assert keys == {f"change-{pk}" for pk in told}


class FailingBackend(BaseEmailBackend):
    def send_messages(self, messages):
        raise smtplib.SMTPServerDisconnected("mail server went away")


def test_a_failing_send_is_recorded_and_retried_by_the_next_run(
    clock, expiring, settings, mailoutbox
):
    program, _store, _people = expiring
    settings.EMAIL_BACKEND = "tests.members.test_nightly_jobs.FailingBackend"
    summary = run(clock, "notify_members", night(date(2026, 6, 10)), program)
    assert summary["sent"] == 0
    assert summary["failed"] == 2
    for row in MemberNotification.objects.all():
        assert row.sent_at is None
        assert row.attempts == 1
        assert "mail server went away" in row.error
    assert JobRun.objects.get(name="members.notify_members").status == "succeeded"

    settings.EMAIL_BACKEND = LOCMEM
    summary = run(clock, "notify_members", night(date(2026, 6, 11)), program)
    assert summary == {
        "night": "2026-06-11",
        "expiring_claimed": 0,
        "tier_claimed": 0,
        "sent": 2,
        "failed": 0,
    }
    assert len(mailoutbox) == 2
    for row in MemberNotification.objects.all():
        assert row.sent_at == night(date(2026, 6, 11))
        assert row.attempts == 2
        assert row.error == ""


def test_a_send_that_keeps_failing_is_given_up_after_three_attempts(clock, expiring, settings):
    program, _store, _people = expiring
    settings.EMAIL_BACKEND = "tests.members.test_nightly_jobs.FailingBackend"
    for day in (10, 11, 12, 13, 14):
        run(clock, "notify_members", night(date(2026, 6, day)), program)
    assert set(MemberNotification.objects.values_list("attempts", flat=True)) == {3}
    assert not MemberNotification.objects.filter(sent_at__isnull=False).exists()


# 7. Management commands -----------------------------------------------------------------------


@pytest.fixture
def live_program(db):
    """Data dated relative to the real clock (the commands refuse --at in the future)."""
    program, store = make_program(
        slug="live", return_window_days=10, expiry_policy="after_earning", expiry_months=1
    )
    member = enrol(program, email="live@example.com")
    services.record_purchase(
        store=store,
        receipt_id="OLD",
        amount=Decimal("50.00"),
        currency="EUR",
        occurred_at=timezone.now() - timedelta(days=20),
        card_number=member.card_number,
    )
    return program, member


@pytest.mark.parametrize(
    ("command", "job"),
    [
        ("release_points", "release_pending_points"),
        ("expire_points", "expire_points"),
        ("requalify_tiers", "requalify_tiers"),
        ("notify_members", "notify_members"),
    ],
)
def test_each_job_command_runs_and_prints_its_json_summary(live_program, command, job):
    _program, _member = live_program
    out = io.StringIO()
    moment = (timezone.now() - timedelta(minutes=1)).astimezone(PARIS)
    call_command(command, "--program", "live", "--at", moment.isoformat(), stdout=out)
    result = json.loads(out.getvalue())
    assert set(result) == {"live"}
    assert result["live"]["night"] == moment.date().isoformat()
    assert JobRun.objects.get(name=f"members.{job}").status == "succeeded"


def test_the_release_command_releases_and_run_nightly_runs_the_chain(live_program):
    _program, member = live_program
    out = io.StringIO()
    call_command("release_points", "--batch-size", "1", stdout=out)
    assert json.loads(out.getvalue())["live"]["points"] == 50
    assert balances(member) == (50, 0)

    out = io.StringIO()
    call_command("run_nightly", stdout=out)
    result = json.loads(out.getvalue())
    assert list(result) == list(nightly.NIGHTLY_ORDER)
    assert result["release_pending_points"]["live"]["points"] == 0
    assert find_mismatches() == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--at", "2999-01-01T03:00:00+01:00"], "future"),
        (["--at", "2026-01-01T03:00:00"], "offset"),
        (["--at", "yesterday"], "ISO 8601"),
        (["--program", "nope"], "unknown program"),
        (["--program", "live", "--program", "nope"], "nope"),
        (["--batch-size", "0"], "batch-size"),
    ],
)
@pytest.mark.parametrize(
    "command",
    ["release_points", "expire_points", "requalify_tiers", "notify_members", "run_nightly"],
)
def test_the_commands_refuse_bad_options(live_program, command, args, message):
    with pytest.raises(CommandError, match=message):
        call_command(command, *args, stdout=io.StringIO())
    assert not JobRun.objects.exists()
    assert not PointsEntry.objects.filter(kind="release").exists()


# 8. A year of nights --------------------------------------------------------------------------


class Reference:
    """The rules, computed independently: lots of points by earning date, spent oldest first,
    each expiring on its earning date + N months."""

    def __init__(self, months):
        self.months = months
        self.lots = defaultdict(list)  # member -> [[earned_on, points]], oldest first
        self.debt = defaultdict(int)
        self.expired = defaultdict(dict)

    def credit(self, member, earned_on, points):
        paid = min(self.debt[member], points)
        self.debt[member] -= paid
        if points - paid:
            self.lots[member].append([earned_on, points - paid])
            self.lots[member].sort()

    def debit(self, member, points):
        for lot in self.lots[member]:
            take = min(lot[1], points)
            lot[1] -= take
            points -= take
        self.lots[member] = [lot for lot in self.lots[member] if lot[1]]
        self.debt[member] += points

    def expire(self, day):
        for member, lots in self.lots.items():
            gone = sum(p for earned, p in lots if add_months(earned, self.months) <= day)
            if gone:
                self.expired[member][day] = gone
                self.lots[member] = [lot for lot in lots if add_months(lot[0], self.months) > day]

    def balance(self, member):
        return sum(p for _d, p in self.lots[member]) - self.debt[member]


def test_a_year_of_nights(clock, staff, mailoutbox):
    program, store = make_program(
        return_window_days=14,
        expiry_policy="after_earning",
        expiry_months=6,
        tier_window_months=3,
        tier_grace_periods=1,
    )
    TierFactory(program=program, name="Silver", rank=1, qualify_threshold=Decimal("500"))
    clock.set(at(date(2025, 12, 20)))
    names = ("ana", "ben", "chloe")
    members = {
        name: enrol(program, email=f"{name}@example.com", preferred_language=lang)
        for name, lang in zip(names, ("fr", "en", "fr"), strict=True)
    }
    ref = Reference(months=6)
    pending = []  # [release local night, member, earned_on, points, receipt]
    start, end = date(2026, 1, 1), date(2026, 12, 31)
    events = defaultdict(list)

    purchases = {}

    def purchase_event(who, day, amount, receipt=None):
        def do():
            purchases[receipt] = buy(clock, store, members[who], amount, at(day), receipt)
            release_night = (at(day) + timedelta(days=14)).date() + timedelta(days=1)
            pending.append([release_night, who, day, int(Decimal(amount)), receipt])

        events[day].append(do)

    def return_event(receipt, day, amount):
        def do():
            give_back(clock, store, purchases[receipt], amount, at(day, 18))
            (item,) = [p for p in pending if p[4] == receipt]
            item[3] -= int(Decimal(amount))

        events[day].append(do)

    def spend_event(who, day, points):
        def do():
            spend(clock, members[who], points, at(day, 16), staff)
            ref.debit(who, points)

        events[day].append(do)

    # Ana buys every month and spends twice; Ben buys big once (Silver at once, then downgraded
    # after the grace); Chloe buys a little in January and then goes silent.
    for month in range(1, 13):
        purchase_event("ana", date(2026, month, 5), f"{20 + 5 * month}.00")
    purchase_event("ana", date(2026, 3, 17), "80.00", receipt="ANA-MARCH")
    return_event("ANA-MARCH", date(2026, 3, 20), "30.00")
    spend_event("ana", date(2026, 4, 2), 70)
    spend_event("ana", date(2026, 9, 9), 100)
    purchase_event("ben", date(2026, 2, 14), "600.00")
    spend_event("ben", date(2026, 5, 1), 250)
    purchase_event("chloe", date(2026, 1, 31), "45.00")
    purchase_event("chloe", date(2026, 8, 31), "31.00")

    for day in days(start, end):
        moment = clock.set(night(day))
        nightly.run_nightly(now=moment)
        # The reference: releases, then expiry, at 03:00.
        for item in [p for p in pending if p[0] == day]:
            ref.credit(item[1], item[2], item[3])
            pending.remove(item)
        ref.expire(day)
        for event in events.get(day, ()):
            event()
        # The ledger agrees with the reference every night.
        available = dict(
            Member.objects.filter(program=program).values_list("email", "points_available")
        )
        assert available == {f"{who}@example.com": ref.balance(who) for who in members}, day

    for who, member in members.items():
        assert expired_by_night(member) == ref.expired[who], who
    assert ref.expired["chloe"] == {date(2026, 7, 31): 45}
    assert ref.expired["ben"] == {date(2026, 8, 14): 350}
    assert sum(ref.expired["ana"].values()) > 0
    assert not pending

    # Tiers: Ben reached Silver on his purchase, kept it for the grace and was downgraded once
    # the window no longer counted it; nobody else ever qualified.
    changes = list(
        TierChange.objects.filter(member=members["ben"])
        .order_by("created_at", "pk")
        .values_list("reason", "to_tier__name")
    )
    assert changes == [("purchase", "Silver"), ("downgrade", "Bronze")]
    assert not TierChange.objects.exclude(member=members["ben"]).exists()
    for member in members.values():
        member.refresh_from_db()
        assert member.tier.name == "Bronze"
    # Each tier change was told, once.
    assert MemberNotification.objects.filter(kind="tier_changed").count() == 2
    assert find_mismatches() == []
    assert not JobRun.objects.exclude(status="succeeded").exists()
