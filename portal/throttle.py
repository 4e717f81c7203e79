"""Counters that slow down password guessing and email flooding on the portal.

Each counter lives in the cache (Redis in production, so every web worker shares it) and is
incremented atomically (`cache.add` then `cache.incr`: Redis INCR). Keys are hashed so that no
email address is stored in the cache. Limits and windows come from settings (PORTAL_THROTTLES).
"""

import hashlib

from django.conf import settings
from django.core.cache import cache

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


def client_address(request) -> str:
    """The visitor's address: REMOTE_ADDR, or behind a proxy the last address of the header
    named by CLIENT_IP_HEADER (the one our own proxy appended; earlier ones can be forged)."""
    header = getattr(settings, "CLIENT_IP_HEADER", "")
    if header:
        forwarded = request.META.get(header, "")
        last = forwarded.rsplit(",", 1)[-1].strip()
        if last:
            return last
    return request.META.get("REMOTE_ADDR", "") or "unknown"


def count(name: str, ident: str) -> int:
    return cache.get(_key(name, ident), 0)


def exceeded(name: str, ident: str) -> bool:
    return count(name, ident) >= _limit(name)[0]


def hit(name: str, ident: str) -> int:
    """Count one attempt; returns the new count."""
    key = _key(name, ident)
    window = _limit(name)[1]
    cache.add(key, 0, timeout=window)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=window)
        return 1


def reset(name: str, ident: str) -> None:
    cache.delete(_key(name, ident))


def allow_email(request, email: str) -> bool:
    """Count a request that sends an email to `email` against the address typed and the
    client's address; False (nothing counted) when either has had its share."""
    address = client_address(request)
    if exceeded("email-account", email) or exceeded("email-address", address):
        return False
    hit("email-account", email)
    hit("email-address", address)
    return True
