"""Staff sign-in lockout: django-axes on the admin login, made to hold against parallel guesses.

axes records each failed sign-in at /admin/login/ in an `AccessAttempt` row (per username,
address and browser) and refuses a sign-in once the account, or separately the address, has
`AXES_FAILURE_LIMIT` failures within `AXES_COOLOFF_TIME` of the last one. Those rows are the
lockout: staff read them in the admin (Axes → Access attempts), and deleting them, in the admin
or with `manage.py axes_reset_username` and the other `axes_reset*` commands, unlocks.

axes reads the failures before the password is checked and writes them after, so requests
arriving together would all pass the check before any failure was written. `AdminLoginHandler`
counts each sign-in as in flight first (a cache counter per account and per address: Redis
INCR in production) and refuses it when the failures written plus the sign-ins already in
flight reach the limit; `release_login_slots` uncounts it when its request ends, after its
failure was written. A finished sign-in is therefore always seen, in flight or written, and at
most `AXES_FAILURE_LIMIT` wrong passwords are checked per account or address, however many
arrive at once.

Only the admin login is governed here. The member portal checks its members' passwords itself
and has its own throttle (portal/throttle.py); the handler ignores sign-ins and sign-outs made
anywhere but under /admin/, so members never appear in the staff lockout records.
"""

import hashlib
import ipaddress
import math

from axes.backends import AxesStandaloneBackend
from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_parameters, get_client_username, get_cool_off
from axes.helpers import get_failure_limit as axes_failure_limit
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib import admin
from django.db.models import Sum
from django.shortcuts import render
from django.utils.translation import gettext as _

from . import counters
from .net import client_address

# How long a sign-in may stay counted as in flight after the last one began: far longer than a
# request may run (gunicorn stops one after 30 s), so that a slot left by a killed worker only
# lasts until the account or address has been quiet that long.
IN_FLIGHT_SECONDS = 120


def client_ip(request) -> str | None:
    """The client's address for axes (AXES_CLIENT_IP_CALLABLE): the project's rule
    (loyalty.net.client_address), None when it is not an IP address (axes stores an IP)."""
    address = client_address(request)
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


class AdminLoginBackend(AxesStandaloneBackend):
    """axes' backend (first in AUTHENTICATION_BACKENDS): refuses a locked-out sign-in before any
    password is checked. A call without a request (a shell, the test client's `login()`) is no
    web sign-in at the admin, so it is left to the other backends."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)


class AdminLoginHandler(AxesDatabaseHandler):
    """axes' database handler, scoped to the admin, counting each sign-in before it is checked."""

    def is_allowed(self, request, credentials=None) -> bool:
        if not self.is_admin_request(request):
            return True
        if self.is_blacklisted(request, credentials):
            return False
        if self.is_whitelisted(request, credentials):
            return True
        if not self._take_slot_within_limit(request, credentials):
            # The middleware answers with the lockout page even when the failures written are
            # still under the limit (the rest are in flight).
            request.axes_locked_out = True
            request.axes_credentials = credentials
            return False
        return True

    def _take_slot_within_limit(self, request, credentials) -> bool:
        """Count this sign-in as in flight on each lockout parameter (account, address), then
        check that the failures written plus the sign-ins in flight before it stay under the
        limit. Counting comes first, so of two sign-ins at once the second sees the first."""
        if not settings.AXES_LOCK_OUT_AT_FAILURE:
            return True
        parameters = get_client_parameters(
            get_client_username(request, credentials),
            request.axes_ip_address,
            request.axes_user_agent,
            request,
            credentials,
        )
        keys = [_slot_key(filter_kwargs) for filter_kwargs in parameters]
        in_flight = [counters.incr(key, IN_FLIGHT_SECONDS, extend=True) for key in keys]
        request._admin_login_slots = [*getattr(request, "_admin_login_slots", []), *keys]
        limit = axes_failure_limit(request, credentials)
        attempts_lists = self.get_user_attempts(request, credentials)
        for attempts, count in zip(attempts_lists, in_flight, strict=True):
            failures = attempts.aggregate(n=Sum("failures_since_start"))["n"] or 0
            if failures + count - 1 >= limit:
                return False
        return True

    def reset_user_attempts(self, request, credentials=None) -> int:
        """After a successful sign-in (AXES_RESET_ON_SUCCESS): forget the failures of that
        account only. axes would also forget every failure from the address, which would let
        one who holds an account wash their address between guesses at another."""
        username = get_client_username(request, credentials)
        count, _ = AccessAttempt.objects.filter(username=username).delete()
        return count

    def user_login_failed(self, sender, credentials, request=None, **kwargs):
        if request is not None and self.is_admin_request(request):
            super().user_login_failed(sender, credentials, request, **kwargs)

    def user_logged_in(self, sender, request, user, **kwargs):
        if request is not None and self.is_admin_request(request):
            super().user_logged_in(sender, request, user, **kwargs)

    def user_logged_out(self, sender, request, user, **kwargs):
        if request is not None and self.is_admin_request(request):
            super().user_logged_out(sender, request, user, **kwargs)


def release_login_slots(get_response):
    """Middleware: a sign-in stops counting as in flight when its request ends, after axes has
    written its failure. Placed next to axes' middleware, around the views."""

    def middleware(request):
        try:
            return get_response(request)
        finally:
            for key in getattr(request, "_admin_login_slots", ()):
                counters.decr(key)

    return middleware


def lockout_response(request, original_response=None, credentials=None):
    """The answer to a locked-out sign-in (AXES_LOCKOUT_CALLABLE): the admin's lockout page,
    429 Too Many Requests."""
    cool_off = get_cool_off(request)
    context = {
        **admin.site.each_context(request),
        "title": _("Sign-in locked"),
        "cooloff_minutes": math.ceil(cool_off.total_seconds() / 60) if cool_off else None,
    }
    return render(request, "admin/lockout.html", context, status=settings.AXES_HTTP_RESPONSE_CODE)


def _slot_key(filter_kwargs: dict) -> str:
    ident = "|".join(f"{name}={value}" for name, value in sorted(filter_kwargs.items()))
    return f"admin-login-in-flight:{hashlib.sha256(ident.encode()).hexdigest()[:32]}"
