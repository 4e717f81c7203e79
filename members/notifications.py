"""Emails to members, through an outbox: a notification is claimed (one row, unique per
member, kind and key) in the transaction that decides it, then sent and marked sent.

A claim is never made twice, so re-running the nightly job sends nothing twice; a send that
fails is retried by the next run (up to MAX_ATTEMPTS). The only window for a duplicate is a
crash between the mail server accepting a message and the row being marked sent.
"""

import logging
from datetime import date, datetime

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from loyalty.models import Program

from .models import Member, MemberNotification, TierChange
from .selectors import expiry_schedule

logger = logging.getLogger(__name__)
Kind = MemberNotification.Kind
MAX_ATTEMPTS = 3
SEND_BATCH = 200


def _reachable(program: Program, member_ids) -> set[int]:
    return set(
        Member.objects.filter(program=program, pk__in=list(member_ids), status=Member.Status.ACTIVE)
        .exclude(email="")
        .values_list("pk", flat=True)
    )


def _claim(rows: list[MemberNotification]) -> int:
    """Insert the notifications not claimed yet; return how many were new."""
    if not rows:
        return 0
    kind = rows[0].kind
    existing = set(
        MemberNotification.objects.filter(
            kind=kind,
            member_id__in=[r.member_id for r in rows],
            key__in={r.key for r in rows},
        ).values_list("member_id", "key")
    )
    fresh = [r for r in rows if (r.member_id, r.key) not in existing]
    MemberNotification.objects.bulk_create(fresh, ignore_conflicts=True)
    return len(fresh)


def claim_expiry_warnings(
    program: Program, points_by_member: dict[int, int], *, key: str, horizon: date, now: datetime
) -> int:
    """Claim one "points expiring" email per member and `key` (the month)."""
    reachable = _reachable(program, points_by_member)
    return _claim(
        [
            MemberNotification(
                member_id=member_id,
                kind=Kind.POINTS_EXPIRING,
                key=key,
                context={"points": points, "by": horizon.isoformat()},
                created_at=now,
            )
            for member_id, points in sorted(points_by_member.items())
            if member_id in reachable
        ]
    )


def claim_tier_changes(program: Program, *, since: datetime, now: datetime) -> int:
    """Claim one "tier changed" email per recent tier change."""
    claimed = 0
    changes = (
        TierChange.objects.filter(program=program, created_at__gte=since)
        .filter(member__status=Member.Status.ACTIVE)
        .exclude(member__email="")
        .values_list("pk", "member_id", "from_tier__name", "to_tier__name", "reason")
        .order_by("pk")
    )
    batch = []
    for pk, member_id, from_name, to_name, reason in changes.iterator(chunk_size=SEND_BATCH):
        batch.append(
            MemberNotification(
                member_id=member_id,
                kind=Kind.TIER_CHANGED,
                key=f"change-{pk}",
                context={"from": from_name, "to": to_name, "reason": reason},
                created_at=now,
            )
        )
        if len(batch) >= SEND_BATCH:
            claimed += _claim(batch)
            batch = []
    return claimed + _claim(batch)


def render(
    notification: MemberNotification, member: Member, *, now: datetime | None = None
) -> EmailMultiAlternatives:
    """The email of a notification, in the member's language, as plain text and HTML."""
    program = member.program
    with translation.override(member.preferred_language or settings.LANGUAGE_CODE):
        context = {
            "member": member,
            "program": program,
            "data": notification.context,
            "site_url": settings.SITE_URL,
        }
        if notification.kind == Kind.POINTS_EXPIRING:
            today = timezone.localtime(now or timezone.now(), program.tzinfo).date()
            by = date.fromisoformat(notification.context["by"])
            context["by"] = by
            context["schedule"] = [(d, p) for d, p in expiry_schedule(member, today) if d <= by]
            subject = _("%(program)s: some of your %(points_name)s expire soon") % {
                "program": program.name,
                "points_name": program.points_name,
            }
            template = "emails/points_expiring"
        else:
            subject = _("%(program)s: your tier has changed") % {"program": program.name}
            template = "emails/tier_changed"
        text = render_to_string(f"{template}.txt", context)
        html = render_to_string(f"{template}.html", context)
    message = EmailMultiAlternatives(subject, text, to=[member.email])
    message.attach_alternative(html, "text/html")
    return message


def send_pending(program: Program, *, now: datetime, ids=None) -> tuple[int, int]:
    """Send the program's claimed, unsent notifications (only `ids` when given); return
    (sent, failed). Works by batches of ids read once up front: selecting each batch again
    among all unsent rows cost a scan of them per batch."""
    sent = failed = 0
    connection = get_connection()
    batches = pending_ids(program) if ids is None else [list(ids)]
    for chunk in batches:
        batch = (
            MemberNotification.objects.filter(
                pk__in=chunk,
                member__program=program,
                sent_at__isnull=True,
                attempts__lt=MAX_ATTEMPTS,
            )
            .select_related("member__program")
            .order_by("pk")
        )
        for notification in batch:
            try:
                connection.send_messages([render(notification, notification.member, now=now)])
            except Exception as exc:  # recorded on the row, retried by the next run
                logger.warning("notification %s failed: %s", notification.pk, exc)
                MemberNotification.objects.filter(pk=notification.pk).update(
                    attempts=notification.attempts + 1, error=str(exc)[:2000]
                )
                failed += 1
                continue
            MemberNotification.objects.filter(pk=notification.pk).update(
                sent_at=now, attempts=notification.attempts + 1, error=""
            )
            sent += 1
    return sent, failed


def pending_ids(program: Program):
    """The ids of the program's claimed, unsent notifications, in chunks of SEND_BATCH."""
    chunk = []
    for pk in (
        MemberNotification.objects.filter(
            member__program=program, sent_at__isnull=True, attempts__lt=MAX_ATTEMPTS
        )
        .order_by("pk")
        .values_list("pk", flat=True)
        .iterator(chunk_size=5000)
    ):
        chunk.append(pk)
        if len(chunk) == SEND_BATCH:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
