"""Staff see which members have an online account, whether it is confirmed, and when it was
last used. Accounts are created and changed by the members themselves on the portal."""

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from .models import MemberAccount


@admin.register(MemberAccount)
class MemberAccountAdmin(admin.ModelAdmin):
    list_display = ("member", "program", "email_verified_at", "last_login", "created_at")
    list_filter = ("member__program", ("email_verified_at", admin.EmptyFieldListFilter))
    search_fields = ("member__card_number", "member__email", "member__last_name")
    list_select_related = ("member__program", "user")
    readonly_fields = ("member", "email_verified_at", "pending_email", "last_login", "created_at")
    fields = readonly_fields
    ordering = ("-created_at",)

    @admin.display(description=_("program"), ordering="member__program__name")
    def program(self, account):
        return account.member.program

    @admin.display(description=_("last login"), ordering="user__last_login")
    def last_login(self, account):
        return account.user.last_login

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
