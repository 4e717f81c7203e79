"""Online accounts of members: the login of a member on the portal of their program.

A member enrolled at the till has no account until they claim one. The login is a Django user
(so passwords are hashed with Argon2 and sessions, CSRF and password reset tokens are Django's),
linked one to one to the member; its username is internal and never shown.
"""

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from members.models import Member


class MemberAccount(models.Model):
    member = models.OneToOneField(
        Member, on_delete=models.PROTECT, related_name="account", verbose_name=_("member")
    )
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="member_account",
        verbose_name=_("login"),
    )
    email_verified_at = models.DateTimeField(_("email verified at"), null=True, blank=True)
    pending_email = models.EmailField(
        _("new email awaiting confirmation"), blank=True, help_text=_("Applied once confirmed.")
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("member account")
        verbose_name_plural = _("member accounts")

    def __str__(self):
        return str(self.member)

    @property
    def is_verified(self) -> bool:
        return self.email_verified_at is not None


class PortalRedemption(models.Model):
    """One redemption asked from the portal, keyed by the one-time token of the confirmation
    form: a double click or a resent form gives the first voucher, never a second one. The
    token is claimed in the same transaction as the redemption it protects."""

    token = models.CharField(max_length=64, unique=True)
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="+")
    redemption = models.ForeignKey(
        "rewards.Redemption", on_delete=models.CASCADE, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.token
