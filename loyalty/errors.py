"""Domain exceptions. Services raise them; the API maps them to problem details (RFC 9457) in
one exception handler (loyalty/api.py) and views map them to form errors, so a rule gives the
same message everywhere."""

from django.utils.translation import gettext_lazy as _


class DomainError(Exception):
    """A business rule refused the action. Nothing was written."""

    code = "domain_error"
    status = 422
    title = _("The request breaks a business rule.")
    field: str | None = None

    def __init__(self, detail=None, *, field=None, status=None, **extra):
        self.detail = str(detail if detail is not None else self.title)
        if field is not None:
            self.field = field
        if status is not None:
            self.status = status
        self.extra = extra
        super().__init__(self.detail)


class Conflict(DomainError):
    code = "conflict"
    status = 409
    title = _("The request conflicts with an earlier one.")


class NotFound(DomainError):
    code = "not_found"
    status = 404
    title = _("Not found.")
