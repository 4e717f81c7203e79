"""Counters in the cache (Redis in production, shared by every web worker), incremented and
decremented atomically. The portal's throttles and the staff sign-in lockout count with them."""

from django.core.cache import cache


def incr(key: str, timeout: int, *, extend: bool = False) -> int:
    """Count one in `key`; the new count (`cache.add` then `cache.incr`: Redis INCR, so that of
    many requests at once each sees its own count). The key expires `timeout` seconds after its
    first count, or after its latest one with `extend`."""
    cache.add(key, 0, timeout=timeout)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        count = 1 if cache.add(key, 1, timeout=timeout) else cache.incr(key)
    if extend or count == 1:
        # This also gives an expiry to a key that Redis' INCR created after it had just
        # expired.
        cache.touch(key, timeout)
    return count


def decr(key: str) -> None:
    """Uncount one from `key`; nothing when it has expired."""
    try:
        count = cache.decr(key)
    except ValueError:  # expired: nothing left to uncount
        return
    if count < 0:
        # The key expired between Redis' EXISTS and DECR, which made a new one without expiry.
        cache.delete(key)
