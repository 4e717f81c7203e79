"""What every POS endpoint shares: API-key authentication, per-key throttling, a bounded JSON
parser, problem-details errors (RFC 9457) and Idempotency-Key handling."""

import hashlib
import json
import threading
import time

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.http import Http404, HttpResponse
from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions, status
from rest_framework.authentication import BaseAuthentication
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from .errors import Conflict, DomainError
from .models import IdempotencyRecord, Program, Store, StoreAPIKey
from .sql import from_row, select_columns

PROBLEM_CONTENT_TYPE = "application/problem+json"


class PosClient:
    """The authenticated caller of the POS API: a store, through one of its API keys."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, api_key: StoreAPIKey):
        self.api_key = api_key
        self.store = api_key.store
        self.program = api_key.store.program


_API_KEY_SQL = None


def _api_key_with_store(prefix: str) -> StoreAPIKey | None:
    """The unrevoked key with this prefix, its store and program, in one precompiled query."""
    global _API_KEY_SQL
    if _API_KEY_SQL is None:
        _API_KEY_SQL = (
            f"SELECT {select_columns(StoreAPIKey, 'k')}, {select_columns(Store, 's')}, "  # noqa: S608  # nosec B608  # table and column names from model metadata; the prefix is a parameter
            f"{select_columns(Program, 'p')} "
            f"FROM {StoreAPIKey._meta.db_table} k "
            f"JOIN {Store._meta.db_table} s ON s.id = k.store_id "
            f"JOIN {Program._meta.db_table} p ON p.id = s.program_id "
            "WHERE k.prefix = %s AND NOT k.revoked"
        )
    with connection.cursor() as cursor:
        cursor.execute(_API_KEY_SQL, [prefix])
        row = cursor.fetchone()
    if row is None:
        return None
    api_key, i = from_row(StoreAPIKey, row)
    store, i = from_row(Store, row, i)
    program, _ = from_row(Program, row, i)
    store.program = program
    api_key.store = store
    return api_key


class StoreAPIKeyAuthentication(BaseAuthentication):
    """`Authorization: Api-Key <key>`: one query, SHA-512 check of the key against its hash."""

    keyword = "Api-Key"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _sep, key = header.partition(" ")
        key = key.strip()
        if scheme != self.keyword or not key:
            raise exceptions.AuthenticationFailed(_("Use the header Authorization: Api-Key <key>."))
        if not key.isascii() or not key.isprintable():
            raise exceptions.AuthenticationFailed(_("Unknown, revoked or expired API key."))
        prefix = key.partition(".")[0]
        api_key = _api_key_with_store(prefix)
        if api_key is None or api_key.has_expired or not api_key.is_valid(key):
            raise exceptions.AuthenticationFailed(_("Unknown, revoked or expired API key."))
        store = api_key.store
        if not store.is_active or store.program.status not in (
            Program.Status.ACTIVE,
            Program.Status.PAUSED,
        ):
            raise exceptions.AuthenticationFailed(_("This store or its program is not active."))
        return PosClient(api_key), api_key

    def authenticate_header(self, request):
        return f'{self.keyword} realm="pos"'


_redis_client = None
_redis_client_lock = threading.Lock()


def _redis():
    """One Redis client per process. Created under a lock: two threads creating their own
    would let the loser's client be collected, closing a connection the other thread uses."""
    global _redis_client
    if _redis_client is None:
        with _redis_client_lock:
            if _redis_client is None:
                import redis

                _redis_client = redis.Redis.from_url(settings.REDIS_URL)
    return _redis_client


def _throttle_count(key: str, ttl: int) -> int:
    """Count one request in `key`: INCR and EXPIRE in one round trip to Redis when it is
    configured (shared by every web worker), the Django cache otherwise."""
    if settings.REDIS_URL:
        pipe = _redis().pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, ttl)
        return pipe.execute()[0]
    try:
        return cache.incr(key)
    except ValueError:
        return 1 if cache.add(key, 1, timeout=ttl) else cache.incr(key)


class ApiKeyRateThrottle(BaseThrottle):
    """A fixed one-minute window per API key, counted atomically in Redis in production, so
    that all web workers share the count."""

    def allow_request(self, request, view):
        client = request.user
        if not isinstance(client, PosClient):
            return True
        now = time.time()
        window = int(now // 60)
        count = _throttle_count(f"throttle:pos:{client.api_key.pk}:{window}", 120)
        self._wait = 60 - (now % 60)
        return count <= settings.POS_API_RATE_PER_MINUTE

    def wait(self):
        return self._wait


class BodyTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = _("The request body is too large.")
    default_code = "body_too_large"


# How deep objects and arrays may nest in a request body: the deepest documented body (a
# purchase's lines) is 3 levels.
MAX_JSON_DEPTH = 16


NUL_REFUSED = _("Text cannot contain the NUL character (\\u0000).")


def _refuse_constant(name):
    raise ValueError(f"{name} is not JSON")


def _too_deep() -> exceptions.ParseError:
    return exceptions.ParseError(
        _("The body nests more than %(depth)d levels deep.") % {"depth": MAX_JSON_DEPTH}
    )


def check_json_value(data) -> None:
    """ParseError unless `data` nests at most MAX_JSON_DEPTH deep and no string or key holds a
    NUL character (which no text column can store). Walked without recursion."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                raise exceptions.ParseError(NUL_REFUSED)
        elif isinstance(value, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise _too_deep()
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                stack.append((key, depth))
                stack.append((item, depth + 1))


class BoundedJSONParser(JSONParser):
    """JSON with a size limit (POS_API_MAX_BODY_BYTES), enforced while reading; no NaN or
    Infinity, bounded nesting and no NUL character (`check_json_value`)."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.POS_API_MAX_BODY_BYTES
        request = (parser_context or {}).get("request")
        declared = int(request.META.get("CONTENT_LENGTH") or 0) if request is not None else 0
        if declared > limit:
            raise BodyTooLarge()
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise BodyTooLarge()
        try:
            data = json.loads(raw.decode(settings.DEFAULT_CHARSET), parse_constant=_refuse_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise exceptions.ParseError(_("Malformed JSON: %(error)s") % {"error": exc}) from None
        except RecursionError:
            raise _too_deep() from None
        if not isinstance(data, dict):
            raise exceptions.ParseError(_("The body must be a JSON object."))
        check_json_value(data)
        return data


def problem(status_code, code, title, detail=None, *, field=None, errors=None, instance=None):
    body = {
        "type": f"urn:loyalty:problem:{code}",
        "title": str(title),
        "status": status_code,
        "detail": str(detail if detail is not None else title),
        "code": code,
    }
    if field:
        body["field"] = field
    if errors:
        body["errors"] = errors
    if instance:
        body["instance"] = instance
    return body


def _flatten(detail, prefix=""):
    """DRF's nested validation errors as a flat list of {field, code, detail}."""
    if isinstance(detail, dict):
        out = []
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix and key != "non_field_errors" else (prefix or key)
            out.extend(_flatten(value, name))
        return out
    if isinstance(detail, list):
        if detail and all(isinstance(d, exceptions.ErrorDetail | str) for d in detail):
            return [
                {"field": prefix, "code": getattr(d, "code", "invalid"), "detail": str(d)}
                for d in detail
            ]
        out = []
        for i, value in enumerate(detail):
            out.extend(_flatten(value, f"{prefix}[{i}]"))
        return out
    return [{"field": prefix, "code": getattr(detail, "code", "invalid"), "detail": str(detail)}]


STATUS_CODES = {
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.Throttled: "throttled",
    exceptions.ParseError: "malformed_json",
    BodyTooLarge: "body_too_large",
}


def problem_exception_handler(exc, context):
    """One place that turns every error of the API into problem details."""
    request = context.get("request")
    instance = request.path if request is not None else None
    headers = {}
    if isinstance(exc, DomainError):
        body = problem(
            exc.status, exc.code, exc.title, exc.detail, field=exc.field, instance=instance
        )
        body.update(exc.extra)
        status_code = exc.status
    elif isinstance(exc, exceptions.ValidationError):
        errors = _flatten(exc.detail)
        status_code = 400
        first = errors[0] if errors else {"field": None, "detail": str(exc)}
        body = problem(
            400,
            "invalid",
            _("The request is invalid."),
            f"{first['field']}: {first['detail']}" if first["field"] else first["detail"],
            field=first["field"] or None,
            errors=errors,
            instance=instance,
        )
    elif isinstance(exc, Http404):
        status_code = 404
        body = problem(404, "not_found", _("Not found."), instance=instance)
    elif isinstance(exc, exceptions.APIException):
        status_code = exc.status_code
        code = STATUS_CODES.get(type(exc), getattr(exc, "default_code", "error"))
        body = problem(status_code, code, exc.default_detail, exc.detail, instance=instance)
        if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
            headers["Retry-After"] = str(int(exc.wait) + 1)
        auth_header = getattr(exc, "auth_header", None)
        if auth_header:
            headers["WWW-Authenticate"] = auth_header
    else:
        return None
    if status_code == 401 and "WWW-Authenticate" not in headers:
        headers["WWW-Authenticate"] = f'{StoreAPIKeyAuthentication.keyword} realm="pos"'
    response = Response(body, status=status_code, headers=headers)
    response.content_type = PROBLEM_CONTENT_TYPE
    return response


class PosAPIView(APIView):
    """Base of every POS endpoint: API key, throttle, bounded JSON, problem details."""

    authentication_classes = [StoreAPIKeyAuthentication]
    throttle_classes = [ApiKeyRateThrottle]
    parser_classes = [BoundedJSONParser]

    def get_exception_handler(self):
        return problem_exception_handler

    def initial(self, request, *args, **kwargs):
        """Refuse a query parameter given twice (which value was meant is a guess) and a NUL
        character in the URL (a path segment or a query parameter) before anything looks it
        up: no text column can store it."""
        for name, values in request.query_params.lists():
            if len(values) > 1:
                raise exceptions.ValidationError({name: [_("Give this parameter once.")]})
        for name, value in [*kwargs.items(), *request.query_params.items()]:
            if isinstance(value, str) and "\x00" in value:
                raise exceptions.ValidationError({name: [NUL_REFUSED]})
        super().initial(request, *args, **kwargs)

    @property
    def client(self) -> PosClient:
        return self.request.user


def json_response(body: str, status_code: int) -> HttpResponse:
    """Send JSON text as it was stored, so a replay is identical byte for byte."""
    return HttpResponse(body, status=status_code, content_type="application/json")


class IdempotencyKeyReused(DomainError):
    code = "idempotency_key_reused"
    field = "Idempotency-Key"
    title = _("This Idempotency-Key was already used with a different request.")


class IdempotencyInProgress(Conflict):
    code = "idempotency_in_progress"
    field = "Idempotency-Key"
    title = _("A request with this Idempotency-Key is still being processed; retry later.")


class InvalidIdempotencyKey(DomainError):
    code = "invalid_idempotency_key"
    status = 400
    field = "Idempotency-Key"
    title = _("An Idempotency-Key is 1 to 255 printable ASCII characters.")


def _advisory_lock_id(api_key_id: int, key: str) -> int:
    digest = hashlib.blake2b(f"{api_key_id}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def idempotent(request, handler) -> HttpResponse:
    """Run `handler()` (which returns an HttpResponse) at most once per Idempotency-Key.

    Without the header the handler just runs. With it, the key is claimed in the same
    transaction as the handler's writes: a retry with the same body gets the first answer byte
    for byte; with another body, 422; while the first is still running, 409. Only successful
    answers are kept: an error wrote nothing, so running again is harmless.
    """
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return handler()
    if not (0 < len(key) <= 255) or not key.isascii() or not key.isprintable():
        raise InvalidIdempotencyKey()
    client: PosClient = request.user
    request_hash = hashlib.sha256(
        json.dumps(
            [request.method, request.path, request.data], sort_keys=True, default=str
        ).encode()
    ).hexdigest()
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_try_advisory_xact_lock(%s)",
                    [_advisory_lock_id(client.api_key.pk, key)],
                )
                if not cursor.fetchone()[0]:
                    raise IdempotencyInProgress()
        record = IdempotencyRecord.objects.filter(api_key=client.api_key, key=key).first()
        if record is not None:
            if record.request_hash != request_hash:
                raise IdempotencyKeyReused()
            return json_response(record.response_body, record.response_status)
        response = handler()
        if 200 <= response.status_code < 300:
            IdempotencyRecord.objects.create(
                api_key=client.api_key,
                key=key,
                method=request.method,
                path=request.path[:255],
                request_hash=request_hash,
                response_status=response.status_code,
                response_body=response.content.decode(),
            )
    return response


class StoreAPIKeyScheme(OpenApiAuthenticationExtension):
    """Documents the API-key scheme in the OpenAPI schema."""

    target_class = "loyalty.api.StoreAPIKeyAuthentication"
    name = "StoreApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key <key>`: a store's key, from `manage.py create_api_key` or "
            "the admin (shown once).",
        }
