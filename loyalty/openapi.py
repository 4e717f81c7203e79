"""OpenAPI declarations every POS endpoint shares: the problem-details component (RFC 9457)
and the error responses of an endpoint, each with examples of the codes it really answers.

An endpoint documents its success answers and its own domain errors; `api_responses` adds the
statuses every endpoint can answer (400, 401, 406, 429, 500, 503, 413 and 415 with a body, and
414 from the web server), so that a client generated from the schema parses every error into
the `Problem` model. `document_request_rules` (a postprocessing hook) writes into the schema
what the parser refuses in every request."""

from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse
from rest_framework import exceptions, serializers

from .api import (
    PROBLEM_CONTENT_TYPE,
    BodyTooLarge,
    IdempotencyInProgress,
    IdempotencyKeyReused,
    InvalidIdempotencyKey,
)
from .errors import DomainError
from .middleware import STATUS_PROBLEMS


class ProblemFieldError(serializers.Serializer):
    """One field error of a `400 invalid` answer."""

    field = serializers.CharField(
        help_text="The field, nested ones written like `lines[0].quantity`."
    )
    code = serializers.CharField(help_text="A stable machine code, e.g. `required`, `naive`.")
    detail = serializers.CharField()


class Problem(serializers.Serializer):
    """An error, as problem details (RFC 9457). Branch on `code`; some errors add keys of
    their own."""

    type = serializers.CharField(help_text="`urn:loyalty:problem:<code>`")
    title = serializers.CharField(help_text="A short, generic description of the problem.")
    status = serializers.IntegerField(min_value=400, max_value=599, help_text="The HTTP status.")
    detail = serializers.CharField(help_text="A message specific to this occurrence.")
    code = serializers.CharField(help_text="A stable machine code: branch on this.")
    field = serializers.CharField(
        required=False, help_text="The request field concerned, when there is one."
    )
    errors = ProblemFieldError(
        many=True, required=False, help_text="For `400 invalid`: every field error."
    )
    instance = serializers.CharField(required=False, help_text="The request path.")


# Response headers of some errors: add PROBLEM_HEADERS to an endpoint's `parameters`.
PROBLEM_HEADERS = [
    OpenApiParameter(
        "WWW-Authenticate",
        str,
        OpenApiParameter.HEADER,
        required=True,
        response=[401],
        description='`Api-Key realm="pos"`',
    ),
    OpenApiParameter(
        "Retry-After",
        int,
        OpenApiParameter.HEADER,
        required=True,
        response=[429],
        description="Seconds until the rate-limit window resets.",
    ),
    OpenApiParameter(
        "Retry-After",
        int,
        OpenApiParameter.HEADER,
        response=[503],
        description="Seconds to wait before retrying.",
    ),
]

# Answered by the web server (gunicorn, or a proxy in front) before the request reaches Django,
# in HTML: the one error that is not a problem.
URI_TOO_LONG = 414

DESCRIPTIONS = {
    400: "The request is invalid (`invalid`, with every field error in `errors`), its body is "
    "not a JSON object (`malformed_json`), its Idempotency-Key is malformed, or it cannot be "
    "read at all (`bad_request`).",
    401: "No API key, or an unknown, revoked or expired one, or an inactive store or program.",
    404: "Not found.",
    406: "The `Accept` header excludes JSON.",
    409: "The request conflicts with an earlier one.",
    413: "The body exceeds the size limit.",
    414: "The URL is longer than the web server takes (4094 bytes for the request line): "
    "answered in HTML by the web server in front of the API, which the request never reaches.",
    415: "The body is not `application/json`.",
    422: "A business rule refused the request; nothing was written.",
    428: "A required precondition header is missing.",
    429: "The API key's rate limit was reached; retry after `Retry-After` seconds.",
    500: "An unexpected server error; nothing was written. Retry with the same request.",
    503: "The service is unavailable for a moment (e.g. the database); retry after "
    "`Retry-After` seconds with the same request.",
}


class Case:
    """One documented error: its status, code, title, and the detail and field of an example."""

    def __init__(self, status, code, title, detail=None, *, field=None, errors=None, name=None):
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail if detail is not None else title
        self.field = field
        self.errors = errors
        self.name = name or code

    @classmethod
    def of(cls, error: type[DomainError], detail=None, *, field=None, name=None) -> "Case":
        """The case of a domain error class (what loyalty.api.problem_exception_handler
        answers for it)."""
        return cls(
            error.status,
            error.code,
            error.title,
            detail,
            field=field if field is not None else error.field,
            name=name,
        )

    def example(self, instance: str) -> OpenApiExample:
        value = {
            "type": f"urn:loyalty:problem:{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if self.field:
            value["field"] = self.field
        if self.errors:
            value["errors"] = self.errors
        value["instance"] = instance
        return OpenApiExample(self.name, value=value, summary=self.code)


def invalid(field: str, code: str, detail) -> Case:
    """The `400 invalid` case of an endpoint, with one field error as its example."""
    return Case(
        400,
        "invalid",
        _("The request is invalid."),
        detail,
        field=field,
        errors=[{"field": field, "code": code, "detail": detail}],
    )


MALFORMED_JSON = Case(
    400,
    "malformed_json",
    exceptions.ParseError.default_detail,
    _("The body must be a JSON object."),
)
INVALID_IDEMPOTENCY_KEY = Case.of(InvalidIdempotencyKey)
NOT_AUTHENTICATED = Case(
    401,
    "not_authenticated",
    exceptions.NotAuthenticated.default_detail,
)
AUTHENTICATION_FAILED = Case(
    401,
    "authentication_failed",
    exceptions.AuthenticationFailed.default_detail,
    _("Unknown, revoked or expired API key."),
)


def _middleware_case(status: int, detail=None) -> Case:
    """An error answered by loyalty.middleware, outside the views."""
    code, title = STATUS_PROBLEMS[status]
    return Case(status, code, title, detail)


BAD_REQUEST = _middleware_case(400)
NOT_FOUND = _middleware_case(404)
NOT_ACCEPTABLE = Case(406, "not_acceptable", exceptions.NotAcceptable.default_detail)
BODY_TOO_LARGE = Case(413, "body_too_large", BodyTooLarge.default_detail)
UNSUPPORTED_MEDIA_TYPE = Case(
    415, "unsupported_media_type", exceptions.UnsupportedMediaType.default_detail
)
THROTTLED = Case(429, "throttled", exceptions.Throttled.default_detail)
SERVER_ERROR = _middleware_case(500)
SERVICE_UNAVAILABLE = _middleware_case(503)
IDEMPOTENCY_IN_PROGRESS = Case.of(IdempotencyInProgress)
IDEMPOTENCY_KEY_REUSED = Case.of(IdempotencyKeyReused)


def api_responses(
    success: dict,
    *cases: Case | type[DomainError],
    instance: str,
    body: bool = False,
    idempotency_key: bool = False,
) -> dict:
    """The `responses` of a POS endpoint: its `success` answers (status: serializer), then
    every error status it can answer, each a `Problem` (application/problem+json) with an
    example per code.

    `cases`: the endpoint's own errors (domain error classes, or Cases), `instance`: its path
    as an example. Every endpoint also answers 400 bad_request, 401, 406, 429, 500 and 503
    (and 414 from the web server, in HTML: the one error that is not a problem); with a JSON
    `body`, 400 malformed_json, 413 and 415; with an `idempotency_key` header, 400
    invalid_idempotency_key, 409 idempotency_in_progress and 422 idempotency_key_reused.
    """
    own = [case if isinstance(case, Case) else Case.of(case) for case in cases]
    shared = [BAD_REQUEST, NOT_AUTHENTICATED, AUTHENTICATION_FAILED, NOT_ACCEPTABLE, THROTTLED]
    shared += [SERVER_ERROR, SERVICE_UNAVAILABLE]
    if body:
        shared += [MALFORMED_JSON, BODY_TOO_LARGE, UNSUPPORTED_MEDIA_TYPE]
    if idempotency_key:
        shared += [INVALID_IDEMPOTENCY_KEY, IDEMPOTENCY_IN_PROGRESS, IDEMPOTENCY_KEY_REUSED]
    by_status: dict[int, list[Case]] = {}
    for case in [*own, *shared]:
        by_status.setdefault(case.status, []).append(case)
    responses = dict(success)
    for status in sorted({*by_status, URI_TOO_LONG}):
        if status == URI_TOO_LONG:
            responses[(status, "text/html")] = OpenApiResponse(
                OpenApiTypes.STR, description=DESCRIPTIONS[status]
            )
            continue
        examples = by_status[status]
        names = [case.name for case in examples]
        if len(names) != len(set(names)):
            raise ValueError(f"two examples of {status} are named alike: {names}")
        responses[(status, PROBLEM_CONTENT_TYPE)] = OpenApiResponse(
            Problem,
            description=DESCRIPTIONS.get(status, ""),
            examples=[case.example(instance) for case in examples],
        )
    return responses


# Text the parser refuses in every request (loyalty.api.check_json_value, PosAPIView.initial):
# no string, key or URL parameter may hold a NUL character.
NO_NUL = "^[^\\u0000]*$"
# Formats whose grammar has no NUL character.
_FORMATS_WITHOUT_NUL = {"date", "date-time", "email", "uuid", "decimal", "card-number"}


def _refuse_nul(schema: dict) -> None:
    if schema.get("type") == "string" and not (
        "pattern" in schema
        or "enum" in schema
        or schema.get("maxLength") == 0
        or schema.get("format") in _FORMATS_WITHOUT_NUL
    ):
        schema["pattern"] = NO_NUL


def _components_reached(result: dict, roots: list) -> set[str]:
    """The names of the components these schemas use, directly or nested."""
    components = result.get("components", {}).get("schemas", {})
    names: set[str] = set()
    stack = list(roots)
    while stack:
        schema = stack.pop()
        if not isinstance(schema, dict):
            continue
        ref = schema.get("$ref", "")
        if ref.startswith("#/components/schemas/"):
            name = ref.rsplit("/", 1)[1]
            if name not in names:
                names.add(name)
                stack.append(components[name])
            continue
        stack.extend(schema.get("properties", {}).values())
        stack.extend(schema.get(key) for key in ("items", "additionalProperties"))
        for key in ("allOf", "anyOf", "oneOf"):
            stack.extend(schema.get(key, []))
    return names


def document_request_rules(result, generator, request, public):
    """drf-spectacular postprocessing hook: what every request of the POS API must respect,
    written into the schema. A request body has only the documented keys (the parser refuses
    NUL characters and deep nesting anywhere in a body, so an undocumented key is never safe),
    and no string, in a body or a parameter, holds a NUL character."""
    components = result.get("components", {}).get("schemas", {})
    operations = [
        operation for methods in result.get("paths", {}).values() for operation in methods.values()
    ]
    requests = _components_reached(
        result,
        [
            media["schema"]
            for operation in operations
            for media in operation.get("requestBody", {}).get("content", {}).values()
        ],
    )
    answers = _components_reached(
        result,
        [
            media.get("schema")
            for operation in operations
            for response in operation.get("responses", {}).values()
            for media in response.get("content", {}).values()
        ],
    )
    for name in requests:
        component = components[name]
        if component.get("type") == "object" and name not in answers:
            component["additionalProperties"] = False
        for schema in component.get("properties", {}).values():
            _refuse_nul(schema)
            for variant in schema.get("oneOf", []):
                _refuse_nul(variant)
    for operation in operations:
        for parameter in operation.get("parameters", []):
            _refuse_nul(parameter.get("schema", {}))
    return result
