"""The demo member login of `make run`: one of the demo program's best customers, so that the
portal shows a real history, a tier, expiring points and vouchers."""

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from loyalty.models import Program
from members import privacy
from members.models import Member
from portal.models import MemberAccount

DEMO_MEMBER = ("claire.demo@example.fr", "demo-membre-2026")


@transaction.atomic
def seed_member_account(
    program: Program, email: str = DEMO_MEMBER[0], password: str = DEMO_MEMBER[1]
):
    """Give a verified online account to the demo member (created once, password reset on each
    run). Returns the member, or None if the program has no active member."""
    account = (
        MemberAccount.objects.select_related("member", "user")
        .filter(member__program=program, member__email=email)
        .first()
    )
    if account is None:
        member = (
            Member.objects.filter(
                program=program, status=Member.Status.ACTIVE, account__isnull=True
            )
            .order_by("-points_lifetime", "pk")
            .first()
        )
        if member is None:
            return None
        privacy.change_email(member, email)
        user = get_user_model().objects.create(username=f"member-{member.pk}", email=email)
        account = MemberAccount.objects.create(
            member=member, user=user, email_verified_at=timezone.now()
        )
    account.user.set_password(password)
    account.user.is_active = True
    account.user.save(update_fields=["password", "is_active"])
    return account.member
