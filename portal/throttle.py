"""Counters that slow down password guessing and email flooding on the portal.

Each counter lives in the cache (Redis in production, so every web worker shares it) and counts
attempts in a fixed window. An attempt is counted first, atomically (`cache.add` then
`cache.incr`: Redis INCR), and goes ahead only if the new count is within the limit: of many
requests arriving at once, each sees its own count, so at most `limit` go ahead in a window.
A refused attempt stays counted. Keys are hashed so that no email address is stored in the
cache. Limits and windows come from settings (PORTAL_THROTTLES).
"""

import hashlib

from django.conf import settings
from django.core.cache import cache

from loyalty import counters
from loyalty.net import client_address

DEFAULTS = {
    # name: (attempts allowed, window in seconds)
    "login-account": (5, 15 * 60),
    "login-address": (20, 15 * 60),
    "email-account": (3, 60 * 60),
    "email-address": (10, 60 * 60),
}


def _limit(name: str) -> tuple[int, int]:
    return getattr(settings, "PORTAL_THROTTLES", {}).get(name, DEFAULTS[name])


def _key(name: str, ident: str) -> str:
    digest = hashlib.sha256(ident.strip().lower().encode()).hexdigest()[:32]
    return f"portal-throttle:{name}:{digest}"


def _hit(name: str, ident: str) -> int:
    """Count one attempt; returns the new count. The window starts with its first attempt."""
    return counters.incr(_key(name, ident), _limit(name)[1])


def attempt(*counters: tuple[str, str]) -> bool:
    """Count one attempt on each (name, ident) counter, then say whether every new count is
    within its limit. Only when True may the caller go ahead (check the password, send the
    email)."""
    counts = [(name, _hit(name, ident)) for name, ident in counters]
    return all(count <= _limit(name)[0] for name, count in counts)


def give_back(name: str, ident: str) -> None:
    """Uncount an attempt that turned out not to be a failure (the right password)."""
    counters.decr(_key(name, ident))


def exceeded(name: str, ident: str) -> bool:
    """True when the counter has reached its limit (a cheap early refusal; `attempt` decides)."""
    return cache.get(_key(name, ident), 0) >= _limit(name)[0]


def reset(name: str, ident: str) -> None:
    cache.delete(_key(name, ident))


def allow_email(request, email: str) -> bool:
    """Count a request that sends an email to `email` against the address typed and the
    client's address; False when either has had its share in the window (the request is
    counted all the same)."""
    return attempt(("email-account", email), ("email-address", client_address(request)))
