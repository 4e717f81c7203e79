"""The scheduled nightly run hands the emails to worker tasks in batches: the chain does not
wait for the mail server, and a batch sent twice sends nothing twice."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.utils import timezone

from config import nightly
from config.celery import app as celery_app
from members import notifications
from members.models import MemberNotification
from members.tasks import send_notifications
from tests.factories import ProgramFactory, StoreFactory, TierFactory, enrol

pytestmark = pytest.mark.django_db


@pytest.fixture
def eager(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


def test_queued_emails_are_sent_by_tasks_once(eager, monkeypatch):
    monkeypatch.setattr(notifications, "SEND_BATCH", 2)
    program = ProgramFactory(return_window_days=0)
    TierFactory(program=program, name="Base", rank=0)
    TierFactory(program=program, name="Gold", rank=1, qualify_threshold=Decimal("50"))
    store = StoreFactory(program=program)
    from members import services

    members = [enrol(program, email=f"m{i}@example.fr") for i in range(5)]
    for i, member in enumerate(members):
        services.record_purchase(
            store=store,
            receipt_id=f"R-{i}",
            amount=Decimal("60.00"),
            currency="EUR",
            occurred_at=timezone.now() - timedelta(minutes=5),
            card_number=member.card_number,
        )
    calls = []
    original = send_notifications.delay
    monkeypatch.setattr(send_notifications, "delay", lambda *a: calls.append(a) or original(*a))
    summary = nightly.run_job("notify_members", programs=[program], queue_emails=True)
    assert summary[program.slug]["tier_claimed"] == 5
    assert summary[program.slug]["queued"] == 5
    assert [len(ids) for _pid, ids, _now in calls] == [2, 2, 1]  # batches of SEND_BATCH
    assert len(mail.outbox) == 5
    assert not MemberNotification.objects.filter(sent_at__isnull=True).exists()
    # A batch delivered twice (a worker killed after sending): nothing goes out again.
    send_notifications(*calls[0])
    assert len(mail.outbox) == 5
