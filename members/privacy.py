"""What a member may do with their own data: change contact details and consents, read all
the program holds about them, and close their account.

Closing anonymises the personal data and keeps the ledger (and purchases) for accounting: the
rows stay, attached to a member row that no longer says who the person was.
"""

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from loyalty.errors import DomainError

from . import ledger
from .ledger import Bucket, Kind, Posting
from .models import (
    Member,
    MemberNotification,
    PointsEntry,
    Purchase,
    PurchaseLine,
    PurchaseReturn,
    TierChange,
)

PROFILE_FIELDS = ("first_name", "last_name", "phone", "birth_date", "preferred_language")
CLOSING_REASON = "account closed by the member: available points forfeited"


class PhoneTaken(DomainError):
    code = "phone_taken"
    field = "phone"
    title = _("Another member of this program already uses this phone number.")


class EmailTaken(DomainError):
    code = "email_taken"
    field = "email"
    title = _("Another member of this program already uses this email address.")


def phone_taken(member: Member, phone: str) -> bool:
    return bool(phone) and (
        Member.objects.filter(program_id=member.program_id, phone=phone)
        .exclude(pk=member.pk)
        .exists()
    )


def email_taken(program_id: int, email: str, *, exclude_pk: int | None = None) -> bool:
    rows = Member.objects.filter(program_id=program_id, email=email.strip().lower())
    if exclude_pk:
        rows = rows.exclude(pk=exclude_pk)
    return bool(email) and rows.exists()


def update_profile(member: Member, **changes) -> list[str]:
    """Change the member's names, phone, birth date or language; returns the fields changed.
    A phone already used by another member of the program is refused (PhoneTaken)."""
    unknown = set(changes) - set(PROFILE_FIELDS)
    if unknown:
        raise TypeError(f"not profile fields: {sorted(unknown)}")
    if "phone" in changes:
        changes["phone"] = (changes["phone"] or "").strip()
    changed = [name for name, value in changes.items() if getattr(member, name) != value]
    if not changed:
        return []
    if "phone" in changed and phone_taken(member, changes["phone"]):
        raise PhoneTaken()
    for name in changed:
        setattr(member, name, changes[name])
    try:
        with transaction.atomic():
            member.save(update_fields=[*changed, "updated_at"])
    except IntegrityError as exc:  # a concurrent change took the phone first
        raise PhoneTaken() from exc
    return changed


def change_email(member: Member, email: str) -> None:
    """Set a new (already verified) email address, unique within the program."""
    email = email.strip().lower()
    if email == member.email:
        return
    if email_taken(member.program_id, email, exclude_pk=member.pk):
        raise EmailTaken()
    member.email = email
    try:
        with transaction.atomic():
            member.save(update_fields=["email", "updated_at"])
    except IntegrityError as exc:
        raise EmailTaken() from exc


def set_marketing_consent(member: Member, consent: bool, *, now=None) -> bool:
    """Record the member's marketing consent and when it changed; True if it changed."""
    if member.marketing_consent == consent:
        return False
    member.marketing_consent = consent
    member.marketing_consent_at = now or timezone.now()
    member.save(update_fields=["marketing_consent", "marketing_consent_at", "updated_at"])
    return True


def close_member(member: Member, *, now=None) -> Member:
    """Close the account: available points are forfeited (one ledger row), the personal data is
    erased, the status becomes closed. Purchases and the ledger stay for accounting. Pending
    points are left to the nightly release, whose rows keep the accounts balanced."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = ledger.lock_member(Member.objects.filter(pk=member.pk))
        if locked.status == Member.Status.CLOSED:
            return locked
        if locked.points_available > 0:
            ledger.post(
                locked,
                [Posting(Kind.ADJUST, Bucket.AVAILABLE, -locked.points_available)],
                effective_at=now,
                reason=CLOSING_REASON,
            )
        Member.objects.filter(pk=locked.pk).update(
            first_name="",
            last_name="",
            email="",
            phone="",
            birth_date=None,
            marketing_consent=False,
            marketing_consent_at=now,
            status=Member.Status.CLOSED,
            updated_at=now,
        )
        # The outbox rows hold names and amounts meant for the person: drop what was not sent.
        MemberNotification.objects.filter(member=locked, sent_at__isnull=True).delete()
    locked.refresh_from_db()
    return locked


def _iso(value):
    return value.isoformat() if value is not None else None


def _money(value):
    return str(value) if value is not None else None


def member_data(member: Member) -> dict:
    """Everything the program holds about the member, JSON-ready, in a fixed number of queries
    (one per table, whatever the member's history)."""
    member = Member.objects.select_related("program", "tier", "enrolment_store", "referred_by").get(
        pk=member.pk
    )
    purchases = list(
        Purchase.objects.filter(member=member).select_related("store").order_by("occurred_at", "pk")
    )
    lines: dict[int, list] = {}
    for line in PurchaseLine.objects.filter(purchase__member=member).order_by(
        "purchase_id", "line_no"
    ):
        lines.setdefault(line.purchase_id, []).append(
            {
                "line": line.line_no,
                "sku": line.sku,
                "category": line.category,
                "quantity": str(line.quantity),
                "unit_price": str(line.unit_price),
                "amount": str(line.line_amount),
                "points_earned": line.points_earned,
                "returned_quantity": str(line.returned_quantity),
            }
        )
    returns = PurchaseReturn.objects.filter(purchase__member=member).select_related(
        "store", "purchase"
    )
    entries = (
        PointsEntry.objects.filter(member=member)
        .select_related("store")
        .order_by("effective_at", "pk")
    )
    changes = TierChange.objects.filter(member=member).select_related("from_tier", "to_tier")
    notifications = MemberNotification.objects.filter(member=member).order_by("created_at")
    return {
        "generated_at": _iso(timezone.now()),
        "program": member.program.name,
        "profile": {
            "card_number": member.card_number,
            "first_name": member.first_name,
            "last_name": member.last_name,
            "email": member.email,
            "phone": member.phone,
            "birth_date": _iso(member.birth_date),
            "preferred_language": member.preferred_language,
            "marketing_consent": member.marketing_consent,
            "marketing_consent_changed_at": _iso(member.marketing_consent_at),
            "status": member.status,
            "enrolled_at": _iso(member.enrolled_at),
            "enrolment_channel": member.enrolment_channel,
            "enrolment_store": member.enrolment_store.name if member.enrolment_store else None,
            "referral_code": member.referral_code,
            "referred_by": member.referred_by.card_number if member.referred_by else None,
            "tier": member.tier.name if member.tier else None,
            "points_available": member.points_available,
            "points_pending": member.points_pending,
            "points_lifetime": member.points_lifetime,
            "last_activity_at": _iso(member.last_activity_at),
        },
        "purchases": [
            {
                "id": str(p.public_id),
                "store": p.store.name,
                "receipt_id": p.receipt_id,
                "occurred_at": _iso(p.occurred_at),
                "amount": str(p.total_amount),
                "currency": p.currency,
                "returned_amount": str(p.returned_amount),
                "points_earned": p.points_earned,
                "points_reversed": p.points_reversed,
                "lines": lines.get(p.pk, []),
            }
            for p in purchases
        ],
        "returns": [
            {
                "id": str(r.public_id),
                "purchase": str(r.purchase.public_id),
                "store": r.store.name,
                "return_id": r.return_id,
                "occurred_at": _iso(r.occurred_at),
                "amount": str(r.return_amount),
                "points_reversed": r.points_reversed,
            }
            for r in returns
        ],
        "points": [
            {
                "effective_at": _iso(e.effective_at),
                "kind": e.kind,
                "bucket": e.bucket,
                "points": e.points,
                "store": e.store.name if e.store else None,
                "reason": e.reason,
            }
            for e in entries
        ],
        "tier_changes": [
            {
                "at": _iso(c.created_at),
                "from": c.from_tier.name if c.from_tier else None,
                "to": c.to_tier.name if c.to_tier else None,
                "reason": c.reason,
                "qualifying_value": _money(c.qualifying_value),
            }
            for c in changes
        ],
        "emails": [
            {"kind": n.kind, "claimed_at": _iso(n.created_at), "sent_at": _iso(n.sent_at)}
            for n in notifications
        ],
    }
