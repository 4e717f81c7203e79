"""What every request goes through before the apps' views: problem details for every answer
under /api/, and a 503 that says "retry" while the database cannot be reached."""

import logging

from django.core.exceptions import RequestDataTooBig
from django.core.signals import got_request_exception
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from django.middleware.common import CommonMiddleware
from django.template.loader import render_to_string
from django.utils.translation import gettext_lazy as _

from .api import PROBLEM_CONTENT_TYPE, problem

logger = logging.getLogger("django.request")

API_PREFIX = "/api/"
# Seconds a client is told to wait before retrying while the database is unreachable: a
# restart or a fail-over of PostgreSQL takes a few seconds.
RETRY_AFTER_SECONDS = 2

# The problem of an error answer that no view wrote (an unknown path, a body over Django's
# limit, a server error), by status.
STATUS_PROBLEMS = {
    400: ("bad_request", _("The request cannot be read.")),
    403: ("permission_denied", _("You do not have permission to perform this action.")),
    404: ("not_found", _("Not found.")),
    405: ("method_not_allowed", _("This method is not allowed here.")),
    413: ("body_too_large", _("The request body is too large.")),
    500: ("server_error", _("The server failed to answer; nothing was recorded.")),
    503: ("unavailable", _("The service is briefly unavailable; retry after a few seconds.")),
}


def is_api(request) -> bool:
    return request.path_info.startswith(API_PREFIX)


def problem_response(request, status_code: int, *, headers=None) -> HttpResponse:
    code, title = STATUS_PROBLEMS.get(status_code, ("error", _("The request failed.")))
    return JsonResponse(
        problem(status_code, code, title, instance=request.path),
        status=status_code,
        content_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


def database_unavailable(request) -> HttpResponse:
    """503 with Retry-After: a problem under /api/ (a till retries it with the same receipt
    or Idempotency-Key, which cannot credit twice), a short page elsewhere."""
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if is_api(request):
        return problem_response(request, 503, headers=headers)
    return HttpResponse(
        render_to_string("503.html", request=None),
        status=503,
        headers=headers,
    )


class ErrorAnswerMiddleware:
    """The outermost layer of error answers (inside the security-header middleware, so that
    they carry those headers too).

    - An exception of the database connection (refused, dropped by a restart, a fail-over) is
      a 503 with Retry-After, on every path.
    - Under /api/, every answer of 400 or more that is not already a problem (Django's 404 for
      an unknown path, a body over DATA_UPLOAD_MAX_MEMORY_SIZE, a server error) becomes one,
      with its status and the headers a client acts on (Allow, Retry-After, WWW-Authenticate).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            is_api(request)
            and response.status_code >= 400
            and not response.get("Content-Type", "").startswith(PROBLEM_CONTENT_TYPE)
        ):
            replacement = problem_response(request, response.status_code)
            for header in ("Allow", "Retry-After", "WWW-Authenticate"):
                if header in response:
                    replacement[header] = response[header]
            response = replacement
        return response

    def process_exception(self, request, exception):
        if isinstance(exception, OperationalError | InterfaceError):
            logger.warning(
                "Database unavailable: %s %s: %s", request.method, request.path, exception
            )
            return database_unavailable(request)
        if not is_api(request):
            return None
        if isinstance(exception, RequestDataTooBig):
            return problem_response(request, 413)
        # Logged and signalled as Django does for the 500s it answers itself (the test client
        # re-raises the exception from the signal).
        logger.error(
            "Internal Server Error: %s",
            request.path,
            exc_info=exception,
            extra={"status_code": 500},
        )
        got_request_exception.send(sender=None, request=request)
        return problem_response(request, 500)


class ApiAwareCommonMiddleware(CommonMiddleware):
    """Django's CommonMiddleware, without the redirect that appends a slash under /api/: a
    redirect would turn a till's POST into a GET, so an API path without its slash is a 404
    problem."""

    def should_redirect_with_slash(self, request):
        return not is_api(request) and super().should_redirect_with_slash(request)
