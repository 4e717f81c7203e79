"""Online accounts: enrol on the portal, claim a card enrolled at the till, verify an email
address, sign in, and the emails that carry the links.

Whatever the address typed, enrolment, claiming and password reset answer the same way, so the
portal never tells a stranger whether someone is a member.
"""

import csv
import io
import json
import zipfile
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.tokens import default_token_generator
from django.core import signing
from django.core.mail import EmailMultiAlternatives
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from loyalty.errors import NotFound
from loyalty.models import Program
from members import privacy
from members.models import Member
from members.services import enrol_member
from rewards.models import Redemption, Reward
from rewards.services import format_code, redeem

from .models import MemberAccount, PortalRedemption

VERIFY_SALT = "portal.verify-email"
User = get_user_model()


def verify_max_age() -> int:
    return getattr(settings, "PORTAL_VERIFY_EMAIL_DAYS", 3) * 24 * 3600


@dataclass(frozen=True)
class Link:
    """Builds absolute links for emails from the request that asked for them."""

    request: object

    def __call__(self, name: str, **kwargs) -> str:
        return self.request.build_absolute_uri(reverse(f"portal:{name}", kwargs=kwargs))


# Emails ---------------------------------------------------------------------------------------


def send_email(member: Member, template: str, to: str, context: dict) -> None:
    """Send templates/emails/<template>.txt and .html to `to`, in the member's language."""
    with translation.override(member.preferred_language or settings.LANGUAGE_CODE):
        context = {"member": member, "program": member.program, **context}
        subject = render_to_string(f"emails/{template}.subject.txt", context).strip()
        text = render_to_string(f"emails/{template}.txt", context)
        html = render_to_string(f"emails/{template}.html", context)
    message = EmailMultiAlternatives(subject, text, settings.DEFAULT_FROM_EMAIL, [to])
    message.attach_alternative(html, "text/html")
    message.send()


def verification_token(account: MemberAccount, email: str) -> str:
    return signing.dumps({"a": account.pk, "e": email}, salt=VERIFY_SALT)


def password_link(link: Link, account: MemberAccount) -> str:
    return link(
        "password-reset-confirm",
        program=account.member.program.slug,
        uidb64=urlsafe_base64_encode(force_bytes(account.user.pk)),
        token=default_token_generator.make_token(account.user),
    )


def send_verification(*, link: Link, account: MemberAccount, email: str | None = None) -> None:
    email = email or account.member.email
    url = link(
        "verify-email",
        program=account.member.program.slug,
        token=verification_token(account, email),
    )
    days = verify_max_age() // 86400
    send_email(account.member, "portal_verify", email, {"url": url, "days": days})


def send_password_link(*, link: Link, account: MemberAccount, template: str) -> None:
    send_email(
        account.member,
        template,
        account.member.email,
        {"url": password_link(link, account)},
    )


# Accounts -------------------------------------------------------------------------------------


def _new_account(member: Member, password: str | None) -> MemberAccount:
    with transaction.atomic():
        user = User(username=f"member-{member.pk}", email=member.email)
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.save()
        return MemberAccount.objects.create(member=member, user=user)


def account_for(member: Member) -> MemberAccount:
    """The member's account, created without a password if they have none yet."""
    try:
        return MemberAccount.objects.select_related("user", "member__program").get(member=member)
    except MemberAccount.DoesNotExist:
        pass
    try:
        return _new_account(member, None)
    except IntegrityError:  # created at the same instant by a second request
        return MemberAccount.objects.select_related("user", "member__program").get(member=member)


def enrol_online(*, link: Link, program: Program, password: str, **fields) -> Member:
    """Enrol from the portal. A new member gets an account with `password`, to verify by email.
    If the address is already a member's, nothing changes and the owner of the address gets an
    email instead (sign in or set a password): the typed password is never attached to an
    existing member, and the page shown is the same either way."""
    email = fields.pop("email").strip().lower()
    existing = Member.objects.filter(program=program, email=email).first()
    if existing is not None:
        account = account_for(existing)
        template = "portal_already_member" if account.is_verified else "portal_claim"
        send_password_link(link=link, account=account, template=template)
        return existing
    member, created = enrol_member(program=program, channel="portal", email=email, **fields)
    if not created:  # the phone matched a member with another email: the form checks that
        raise privacy.PhoneTaken()
    account = _new_account(member, password)
    send_verification(link=link, account=account)
    return member


def claim_card(*, link: Link, program: Program, card_number: str, email: str) -> bool:
    """A card holder enrolled at the till asks for an online account: when the card and the
    email on record match, the address gets a link to choose a password. Returns whether an
    email was sent (never shown to the visitor)."""
    email = email.strip().lower()
    member = (
        Member.objects.filter(program=program, card_number=card_number, email=email)
        .exclude(status=Member.Status.CLOSED)
        .first()
    )
    if member is None or not email:
        return False
    account = account_for(member)
    template = "portal_already_member" if account.is_verified else "portal_claim"
    send_password_link(link=link, account=account, template=template)
    return True


def request_password_reset(*, link: Link, program: Program, email: str) -> bool:
    account = (
        MemberAccount.objects.select_related("user", "member__program")
        .filter(member__program=program, member__email=email.strip().lower())
        .exclude(member__status=Member.Status.CLOSED)
        .first()
    )
    if account is None or not account.user.is_active:
        return False
    send_password_link(link=link, account=account, template="portal_password_reset")
    return True


def authenticate_member(*, program: Program, email: str, password: str) -> MemberAccount | None:
    """The account whose email and password match, or None. When no account has this email, a
    password is hashed all the same, so the answer takes as long either way."""
    account = (
        MemberAccount.objects.select_related("user", "member__program", "member__tier")
        .filter(member__program=program, member__email=email.strip().lower())
        .first()
    )
    if account is None:
        make_password(password)
        return None
    if not account.user.check_password(password) or not account.user.is_active:
        return None
    return account


def verify_email(*, token: str) -> MemberAccount | None:
    """Apply a verification link: confirms the address of a new account, or switches to a new
    address the member asked for. None when the link is invalid, expired or outdated."""
    try:
        payload = signing.loads(token, salt=VERIFY_SALT, max_age=verify_max_age())
    except signing.BadSignature:
        return None
    account = (
        MemberAccount.objects.select_related("user", "member__program")
        .filter(pk=payload.get("a"))
        .first()
    )
    if account is None or account.member.status == Member.Status.CLOSED:
        return None
    email = payload.get("e", "")
    now = timezone.now()
    with transaction.atomic():
        if email == account.member.email:
            if account.email_verified_at is None:
                account.email_verified_at = now
                account.save(update_fields=["email_verified_at"])
            return account
        if email and email == account.pending_email:
            try:
                privacy.change_email(account.member, email)
            except privacy.EmailTaken:  # another member took the address in the meantime
                return None
            account.pending_email = ""
            account.email_verified_at = now
            account.save(update_fields=["pending_email", "email_verified_at"])
            User.objects.filter(pk=account.user_id).update(email=email)
            return account
    return None


def mark_verified(*, account: MemberAccount) -> None:
    """Following a password link sent to the address proves it is the member's."""
    if account.email_verified_at is None:
        account.email_verified_at = timezone.now()
        account.save(update_fields=["email_verified_at"])


def request_email_change(*, link: Link, account: MemberAccount, email: str) -> None:
    """Keep the new address aside and send it a confirmation link; the address changes only
    when the link is followed."""
    email = email.strip().lower()
    if privacy.email_taken(account.member.program_id, email, exclude_pk=account.member_id):
        raise privacy.EmailTaken()
    account.pending_email = email
    account.save(update_fields=["pending_email"])
    send_verification(link=link, account=account, email=email)


def close_account(*, account: MemberAccount) -> None:
    """Close the member's account (members.privacy.close_member) and disable the login."""
    with transaction.atomic():
        privacy.close_member(account.member)
        user = account.user
        user.set_unusable_password()
        user.is_active = False
        user.email = ""
        user.save(update_fields=["password", "is_active", "email"])
        account.pending_email = ""
        account.save(update_fields=["pending_email"])


# Data export ----------------------------------------------------------------------------------


COLUMNS = {
    "purchases": [
        "id",
        "store",
        "receipt_id",
        "occurred_at",
        "amount",
        "currency",
        "returned_amount",
        "points_earned",
        "points_reversed",
    ],
    "purchase_lines": [
        "purchase",
        "line",
        "sku",
        "category",
        "quantity",
        "unit_price",
        "amount",
        "points_earned",
        "returned_quantity",
    ],
    "returns": ["id", "purchase", "store", "return_id", "occurred_at", "amount", "points_reversed"],
    "points": ["effective_at", "kind", "bucket", "points", "store", "reason"],
    "tier_changes": ["at", "from", "to", "reason", "qualifying_value"],
    "vouchers": [
        "code",
        "reward",
        "points_spent",
        "status",
        "issued_at",
        "expires_at",
        "used_at",
        "closed_at",
    ],
    "emails": ["kind", "claimed_at", "sent_at"],
}


def redeem_once(*, member: Member, reward: Reward, token: str) -> Redemption:
    """Redeem `reward` for `member` from the portal, once per confirmation `token`: the token
    row is claimed in the redemption's transaction, so a double click or a resent form waits
    for the first request and gets its voucher, never a second one. A token claimed by another
    member (or by nothing that was redeemed) raises NotFound; a refusal writes nothing."""
    with transaction.atomic():
        try:
            with transaction.atomic():
                claim = PortalRedemption.objects.create(token=token, member=member)
        except IntegrityError:
            claim = PortalRedemption.objects.select_related("redemption").get(token=token)
            if claim.member_id != member.pk or claim.redemption is None:
                raise NotFound() from None
            return claim.redemption
        redemption = redeem(member=member, reward=reward, channel=Redemption.Channel.PORTAL)
        claim.redemption = redemption
        claim.save(update_fields=["redemption"])
    return redemption


def member_data(member: Member) -> dict:
    """privacy.member_data and the member's vouchers (rewards live right of members)."""
    data = privacy.member_data(member)
    data["vouchers"] = [
        {
            "code": format_code(r.code),
            "reward": r.reward.name,
            "points_spent": r.points_spent,
            "status": r.status,
            "issued_at": r.issued_at.isoformat(),
            "expires_at": r.expires_at.isoformat() if r.expires_at else None,
            "used_at": r.used_at.isoformat() if r.used_at else None,
            "closed_at": r.closed_at.isoformat() if r.closed_at else None,
        }
        for r in Redemption.objects.filter(member=member)
        .select_related("reward")
        .order_by("issued_at", "pk")
    ]
    return data


def data_json(member: Member) -> bytes:
    return json.dumps(member_data(member), indent=2, ensure_ascii=False).encode()


def _csv(rows: list[dict], columns: list[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return out.getvalue()


def data_zip(member: Member) -> bytes:
    """The same data as data_json, as one CSV file per table in a zip archive."""
    data = member_data(member)
    files = {
        "profile.csv": _csv(
            [{"field": k, "value": v} for k, v in data["profile"].items()], ["field", "value"]
        )
    }
    lines = [{"purchase": p["id"], **line} for p in data["purchases"] for line in p.pop("lines")]
    for name, rows in (
        ("purchases", data["purchases"]),
        ("purchase_lines", lines),
        ("returns", data["returns"]),
        ("points", data["points"]),
        ("tier_changes", data["tier_changes"]),
        ("vouchers", data["vouchers"]),
        ("emails", data["emails"]),
    ):
        files[f"{name}.csv"] = _csv(rows, COLUMNS[name])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()
