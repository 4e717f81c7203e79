"""Facts about the client of a request that several apps share."""

from django.conf import settings


def client_address(request) -> str:
    """The visitor's address: REMOTE_ADDR, or behind a proxy the last address of the header
    named by CLIENT_IP_HEADER (the one our own proxy appended; earlier ones can be forged).
    "unknown" when the request carries none."""
    header = getattr(settings, "CLIENT_IP_HEADER", "")
    if header:
        forwarded = request.META.get(header, "")
        last = forwarded.rsplit(",", 1)[-1].strip()
        if last:
            return last
    return request.META.get("REMOTE_ADDR", "") or "unknown"
