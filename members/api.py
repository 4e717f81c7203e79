"""POS endpoints for members, purchases, returns and quotes. Thin: validate, call a service."""

import re
from datetime import UTC, datetime
from decimal import Decimal

from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
)
from rest_framework import serializers
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response

from loyalty.api import PosAPIView, idempotent, json_response
from loyalty.models import Store
from loyalty.openapi import NOT_FOUND, PROBLEM_HEADERS, Case, api_responses, invalid

from . import errors, services
from .cards import is_valid_card_number, normalize_card_number
from .models import Member, PointsEntry
from .selectors import member_by_card, member_progress

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    # 1 to 255 printable ASCII characters (HTTP strips spaces at either end).
    {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]([ -~]*[!-~])?$"},
    OpenApiParameter.HEADER,
    required=False,
    description="Any unique string (e.g. a UUID). A retry with the same key and body returns "
    "the first answer byte for byte; another body gets 422; 409 while the first is running.",
)
# A path parameter: any text but a slash (which would make it another URL) or NUL.
PATH_SEGMENT = "^[^/\\u0000]+$"
# 13 digits, the last a Luhn check digit; spaces and dashes are ignored.
CARD_NUMBER_SCHEMA = {"type": "string", "format": "card-number"}
CARD_NUMBER_PATH = OpenApiParameter(
    "card_number",
    {**CARD_NUMBER_SCHEMA, "pattern": PATH_SEGMENT, "maxLength": 32},
    OpenApiParameter.PATH,
    description="13 digits; spaces and dashes are ignored",
)
RECEIPT_ID_PATH = OpenApiParameter(
    "receipt_id",
    {"type": "string", "pattern": PATH_SEGMENT, "maxLength": 64},
    OpenApiParameter.PATH,
    description="The receipt id of the purchase",
)


class CardNumberSchema(OpenApiSerializerFieldExtension):
    """A card number in the schema: `format: card-number` (13 digits, the last a Luhn check
    digit, which no JSON Schema keyword can express; bin/fuzz_api_hooks.py teaches it to the
    fuzzer)."""

    target_class = "members.api.CardNumberField"

    def map_serializer_field(self, auto_schema, direction):
        return {**CARD_NUMBER_SCHEMA, "maxLength": self.target.max_length}


class DecimalStringSchema(OpenApiSerializerFieldExtension):
    """A DecimalStringField's exact pattern: digits, at most `decimal_places` decimals after a
    point, at most `max_digits - decimal_places` digits before it (leading zeros aside), and not
    zero when its minimum is the smallest positive step (an amount)."""

    target_class = "members.api.DecimalStringField"

    def map_serializer_field(self, auto_schema, direction):
        field = self.target
        places = field.decimal_places
        whole = field.max_digits - places
        fraction = rf"(\.[0-9]{{1,{places}}})?"
        if field.min_value == Decimal(1).scaleb(-places):
            nonzero_fraction = "|".join(
                "0" * zeros
                + "[1-9]"
                + (f"[0-9]{{0,{places - 1 - zeros}}}" if zeros < places - 1 else "")
                for zeros in range(places)
            )
            pattern = rf"^(0*[1-9][0-9]{{0,{whole - 1}}}{fraction}|0+\.({nonzero_fraction}))$"
        elif field.min_value == 0:
            pattern = rf"^0*[0-9]{{1,{whole}}}{fraction}$"
        else:
            return auto_schema._map_serializer_field(field, direction, bypass_extensions=True)
        return {"type": "string", "format": "decimal", "pattern": pattern}


# Fields ---------------------------------------------------------------------------------------


class ClosedSerializer(serializers.Serializer):
    """A request body with exactly the documented keys: an unknown key (a typo such as
    `card_numbr`) is refused rather than ignored, so that a till's mistake is reported instead
    of silently recording, say, an anonymous purchase."""

    default_error_messages = {"unknown_field": _("Unknown field.")}

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {key: [self.error_messages["unknown_field"]] for key in unknown},
                    code="unknown_field",
                )
        return super().to_internal_value(data)


class StringOnly:
    """A text field that takes only a JSON string: a number or a boolean is refused rather than
    turned into text, so that a till's type mistake is reported, not guessed at."""

    default_error_messages = {"not_a_string": _("Give a string.")}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)


class StrictCharField(StringOnly, serializers.CharField):
    pass


class StrictRegexField(StringOnly, serializers.RegexField):
    pass


class StrictEmailField(StringOnly, serializers.EmailField):
    pass


class StrictSlugField(StringOnly, serializers.SlugField):
    pass


class StrictBooleanField(serializers.BooleanField):
    """true or false only: DRF's BooleanField also takes 0, 1, "yes", "on"..."""

    def to_internal_value(self, data):
        if data is True or data is False:
            return data
        self.fail("invalid", input=data)


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer only: DRF's IntegerField also takes "5" and 5.0."""

    def to_internal_value(self, data):
        if type(data) is not int:
            self.fail("invalid")
        return super().to_internal_value(data)


class DecimalStringField(serializers.DecimalField):
    """A decimal written as a JSON string of digits with an optional point and at most
    `decimal_places` decimals ("42.50"). JSON numbers, exponents ("1e3"), signs and spaces are
    refused: an amount is never guessed from a form a till did not mean."""

    default_error_messages = {
        "not_a_string": _('Give a decimal string such as "42.50", not a JSON number.'),
        "format": _("Digits with at most {places} decimals after a point, e.g. {example}."),
    }

    def __init__(self, **kwargs):
        super().__init__(coerce_to_string=True, **kwargs)
        self._pattern = re.compile(rf"[0-9]+(?:\.[0-9]{{1,{self.decimal_places}}})?")

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("not_a_string")
        if not self._pattern.fullmatch(data):
            example = "42." + "5" * self.decimal_places if self.decimal_places else "42"
            self.fail("format", places=self.decimal_places, example=example)
        return super().to_internal_value(data)


class CardNumberField(StrictCharField):
    def __init__(self, **kwargs):
        super().__init__(max_length=32, **kwargs)

    def to_internal_value(self, data):
        value = normalize_card_number(super().to_internal_value(data))
        if not is_valid_card_number(value):
            raise serializers.ValidationError(
                _("Not a valid card number (13 digits with a check digit)."),
                code="invalid_card_number",
            )
        return value


# The largest identifier a request may name: a PostgreSQL bigint.
MAX_ID = 2**63 - 1

# The years a time given to the API may fall in: far enough either way for any till, and far
# from the ends of Python's calendar, where adding a return window or a time zone overflows.
MIN_YEAR, MAX_YEAR = 1970, 2999


def parse_aware_datetime(text: str) -> tuple[datetime | None, str]:
    """`text` as an aware datetime within MIN_YEAR..MAX_YEAR, and "" ; or None and the reason
    ("invalid", "naive" or "range")."""
    try:
        parsed = parse_datetime(text)
    except ValueError:  # well formed, but no such day or time (e.g. 30 February)
        return None, "invalid"
    if parsed is None:
        return None, "invalid"
    if timezone.is_naive(parsed):
        return None, "naive"
    try:
        year = parsed.astimezone(UTC).year
    except OverflowError:
        return None, "range"
    if not MIN_YEAR <= year <= MAX_YEAR:
        return None, "range"
    return parsed, ""


# The years MIN_YEAR + 1 to MAX_YEAR - 1 as written: within MIN_YEAR..MAX_YEAR in UTC, whatever
# the offset.
AWARE_DATETIME_SCHEMA = {
    "type": "string",
    "format": "date-time",
    "pattern": "^(197[1-9]|19[89][0-9]|2[0-8][0-9]{2}|29[0-8][0-9]|299[0-8])-",
    "description": "ISO 8601 with an offset, e.g. 2026-11-23T10:15:00+01:00",
}


@extend_schema_field(AWARE_DATETIME_SCHEMA)
class AwareDateTimeField(serializers.Field):
    """ISO 8601 with an explicit offset; a time without one is ambiguous and refused."""

    default_error_messages = {
        "invalid": _("Use ISO 8601 with an offset, e.g. 2026-03-14T15:09:26+01:00."),
        "naive": _("Give the time zone offset, e.g. +01:00 or Z."),
        "range": _("Give a time between the years {min} and {max}."),
    }

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        parsed, reason = parse_aware_datetime(data)
        if parsed is None:
            self.fail(reason, min=MIN_YEAR, max=MAX_YEAR)
        return parsed

    def to_representation(self, value):
        return value.isoformat()


def money_field(**kwargs):
    return DecimalStringField(max_digits=12, decimal_places=2, min_value=Decimal("0.01"), **kwargs)


# Enrolment and lookup -------------------------------------------------------------------------

# Digits, spaces, dots and dashes, a leading + allowed, no space at either end (the field trims
# them); at most 20 characters, so at most 20 once the spaces, dots and dashes are dropped
# (Member.phone).
PHONE_PATTERN = r"^\+?[0-9][0-9 .-]{4,17}[0-9.-]$"


class EnrolRequest(ClosedSerializer):
    email = StrictEmailField(required=False, allow_blank=True, max_length=254)
    phone = StrictRegexField(
        PHONE_PATTERN,
        required=False,
        allow_blank=True,
        error_messages={"invalid": _("A phone number: digits, optionally a leading +.")},
    )
    first_name = StrictCharField(required=False, allow_blank=True, max_length=80)
    last_name = StrictCharField(required=False, allow_blank=True, max_length=80)
    birth_date = serializers.DateField(required=False, allow_null=True)
    preferred_language = serializers.ChoiceField(choices=["fr", "en"], required=False)
    marketing_consent = StrictBooleanField(required=False, default=False)
    referral_code = StrictCharField(required=False, allow_blank=True, max_length=10)

    def validate_phone(self, value):
        return "".join(ch for ch in value if ch.isdigit() or ch == "+")

    def validate_birth_date(self, value):
        if value and value > timezone.localdate():
            raise serializers.ValidationError(_("A birth date cannot be in the future."))
        return value


class MemberSummary(serializers.ModelSerializer):
    tier = serializers.CharField(source="tier.name", default=None, allow_null=True, read_only=True)
    email = serializers.EmailField(
        allow_blank=True, read_only=True, help_text="Lowercase; empty when none."
    )

    class Meta:
        model = Member
        fields = [
            "card_number",
            "first_name",
            "last_name",
            "email",
            "phone",
            "status",
            "tier",
            "points_available",
            "points_pending",
            "points_lifetime",
            "enrolled_at",
            "referral_code",
            "preferred_language",
        ]
        read_only_fields = fields  # an answer: every key is always there


class TierOut(serializers.Serializer):
    name = serializers.CharField()
    rank = serializers.IntegerField()
    earn_multiplier = serializers.CharField()
    perks = serializers.ListField(child=serializers.CharField())


class NextTierOut(serializers.Serializer):
    name = serializers.CharField()
    threshold = serializers.CharField(help_text="Qualifying value needed (money or points).")
    missing = serializers.CharField(help_text="What is still missing, within the window.")
    by = serializers.DateField(
        allow_null=True,
        help_text="Calendar year: 31 December. Rolling window: the last day before the oldest "
        "purchase counted leaves the window (the missing amount grows after it).",
    )


class KeepTierOut(serializers.Serializer):
    threshold = serializers.CharField(help_text="Qualifying value that keeps the tier.")
    missing = serializers.CharField()
    review_on = serializers.DateField(
        allow_null=True, help_text="The tier is kept at least until this date."
    )
    manual_until = serializers.DateField(allow_null=True, help_text="Set by staff until.")


class WindowOut(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["rolling", "calendar_year"])
    start = serializers.DateField()
    end = serializers.DateField()


class ExpiringOut(serializers.Serializer):
    date = serializers.DateField()
    points = serializers.IntegerField()


class ProgressOut(serializers.Serializer):
    metric = serializers.ChoiceField(choices=["spend", "points"])
    window = WindowOut()
    qualifying_value = serializers.CharField()
    tier = TierOut(allow_null=True)
    next_tier = NextTierOut(allow_null=True)
    keep = KeepTierOut(allow_null=True)
    expiring = ExpiringOut(many=True, help_text="First in, first out: soonest first.")
    expiring_within_30_days = serializers.IntegerField()


class MemberLookupResponse(MemberSummary):
    progress = ProgressOut()

    class Meta(MemberSummary.Meta):
        fields = [*MemberSummary.Meta.fields, "progress"]


class MemberEnrolView(PosAPIView):
    @extend_schema(
        operation_id="enrol_member",
        summary="Enrol a member (idempotent on email or phone)",
        request=EnrolRequest,
        responses=api_responses(
            {201: MemberSummary, 200: MemberSummary},
            invalid("email", "invalid", _("Enter a valid email address.")),
            errors.EnrolmentConflict,
            errors.UnknownReferralCode,
            instance="/api/v1/members/",
            body=True,
            idempotency_key=True,
        ),
        parameters=[IDEMPOTENCY_HEADER, *PROBLEM_HEADERS],
        examples=[
            OpenApiExample(
                "At the till",
                value={
                    "email": "claire.martin@example.fr",
                    "first_name": "Claire",
                    "last_name": "Martin",
                    "preferred_language": "fr",
                    "marketing_consent": False,
                },
                request_only=True,
            )
        ],
    )
    def post(self, request):
        def handle():
            data = EnrolRequest(data=request.data)
            data.is_valid(raise_exception=True)
            member, created = services.enrol_member(
                program=self.client.program,
                channel=self.client.store.channel,
                store=self.client.store,
                **data.validated_data,
            )
            body = MemberSummary(member).data
            return Response(body, status=201 if created else 200)

        return idempotent(request, lambda: _render(self, request, handle()))


def _render(view, request, response):
    """Render a DRF Response now, so that idempotent() can store its bytes."""
    response = view.finalize_response(request, response)
    response.render()
    return response


_LOOKUP_INVALID = {
    "card_number": _("Not a valid card number (13 digits with a check digit)."),
    "email": _("Not a valid email address."),
    "phone": _("A phone number: digits, optionally a leading +."),
}


class MemberLookupView(PosAPIView):
    @extend_schema(
        operation_id="lookup_member",
        summary="Find a member by card number, email or phone",
        parameters=[
            OpenApiParameter(
                "card_number", CARD_NUMBER_SCHEMA, description="13 digits, spaces allowed"
            ),
            OpenApiParameter("email", {"type": "string", "format": "email"}),
            OpenApiParameter("phone", {"type": "string", "pattern": PHONE_PATTERN}),
            *PROBLEM_HEADERS,
        ],
        responses=api_responses(
            {200: MemberLookupResponse},
            invalid(
                "card_number", "invalid", _("Give exactly one of card_number, email or phone.")
            ),
            Case.of(errors.MemberNotFound, field="card_number"),
            instance="/api/v1/members/lookup/",
        ),
    )
    def get(self, request):
        given = {
            k: request.query_params[k].strip()
            for k in ("card_number", "email", "phone")
            if k in request.query_params
        }
        if len(given) != 1:
            raise serializers.ValidationError(
                {"card_number": [_("Give exactly one of card_number, email or phone.")]}
            )
        field, value = next(iter(given.items()))
        if field == "card_number":
            value = normalize_card_number(value)
            valid = is_valid_card_number(value)
        elif field == "email":
            value = value.lower()
            valid = "@" in value
        else:
            valid = re.fullmatch(PHONE_PATTERN, value) is not None
            value = "".join(ch for ch in value if ch.isdigit() or ch == "+")
        if not valid:
            # A value that cannot be a card, an email or a phone finds no member: refused
            # before any lookup, so that nothing empty is compared with members' blank fields.
            raise serializers.ValidationError({field: [_LOOKUP_INVALID[field]]})
        member = (
            Member.objects.select_related("tier")
            .filter(Q(**{field: value}), program=self.client.program)
            .first()
        )
        if member is None:
            raise errors.MemberNotFound(field=field)
        member.program = self.client.program  # already loaded with the API key
        return Response({**MemberSummary(member).data, "progress": member_progress(member)})


class LedgerEntryOut(serializers.ModelSerializer):
    receipt_id = serializers.CharField(
        source="purchase.receipt_id", default=None, allow_null=True, read_only=True
    )

    class Meta:
        model = PointsEntry
        fields = ["kind", "bucket", "points", "effective_at", "created_at", "receipt_id", "reason"]
        read_only_fields = fields  # an answer: every key is always there


class MemberHistoryOut(serializers.Serializer):
    """One page of a member's ledger (HistoryPagination), with the member's balances."""

    count = serializers.IntegerField(help_text="Entries in every page.")
    next = serializers.URLField(allow_null=True, help_text="The next page, or null.")
    previous = serializers.URLField(allow_null=True, help_text="The previous page, or null.")
    results = LedgerEntryOut(many=True)
    points_available = serializers.IntegerField()
    points_pending = serializers.IntegerField()


class HistoryParams(serializers.Serializer):
    page = serializers.IntegerField(
        min_value=1, required=False, help_text="1-based; beyond the last page: 404"
    )
    page_size = serializers.IntegerField(
        min_value=1, required=False, help_text="50 by default; above 200, 200"
    )


class HistoryPagination(PageNumberPagination):
    """Pages of 50 entries, `page_size` up to 200; `page` and `page_size` are positive integers
    (anything else is 400 invalid, not silently the first page)."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def paginate_queryset(self, queryset, request, view=None):
        # A plain dict: with a QueryDict, DRF would read `?page=` as no page at all.
        params = HistoryParams(data=dict(request.query_params.items()))
        params.is_valid(raise_exception=True)
        self.params = params.validated_data
        return super().paginate_queryset(queryset, request, view)

    def get_page_size(self, request):
        return min(self.params.get("page_size", self.page_size), self.max_page_size)

    def get_page_number(self, request, paginator):
        return self.params.get("page", 1)


class MemberHistoryView(PosAPIView):
    @extend_schema(
        operation_id="member_history",
        summary="A member's points ledger, newest first, paginated",
        parameters=[
            CARD_NUMBER_PATH,
            HistoryParams,
            *PROBLEM_HEADERS,
        ],
        responses=api_responses(
            {200: MemberHistoryOut},
            invalid(
                "page",
                "min_value",
                format_lazy(
                    serializers.IntegerField.default_error_messages["min_value"], min_value=1
                ),
            ),
            Case.of(errors.MemberNotFound),
            Case(404, "not_found", _("Not found."), _("Invalid page."), name="page_not_found"),
            instance="/api/v1/members/9123456789016/history/",
        ),
    )
    def get(self, request, card_number):
        member = member_by_card(self.client.program, card_number)
        entries = (
            PointsEntry.objects.filter(member=member)
            .select_related("purchase")
            .order_by("-effective_at", "-id")
        )
        paginator = HistoryPagination()
        page = paginator.paginate_queryset(entries, request, view=self)
        response = paginator.get_paginated_response(LedgerEntryOut(page, many=True).data)
        response.data["points_available"] = member.points_available
        response.data["points_pending"] = member.points_pending
        return response


# Purchases, returns and quotes ----------------------------------------------------------------


class LineIn(ClosedSerializer):
    sku = StrictCharField(max_length=60, allow_blank=True, required=False, default="")
    category = StrictCharField(max_length=60, allow_blank=True, required=False, default="")
    quantity = DecimalStringField(max_digits=10, decimal_places=3, min_value=Decimal("0.001"))
    unit_price = DecimalStringField(max_digits=12, decimal_places=2, min_value=Decimal("0"))


class PurchaseRequest(ClosedSerializer):
    # No "/": the receipt id is part of the returns URL.
    receipt_id = StrictRegexField(
        r"^[\x21-\x2e\x30-\x7e]{1,64}$",
        error_messages={"invalid": _("1 to 64 printable characters, no spaces and no slash.")},
    )
    card_number = CardNumberField(required=False, allow_null=True)
    amount = money_field()
    currency = StrictRegexField(
        r"^[A-Z]{3}$", error_messages={"invalid": _("A three-letter ISO 4217 code, e.g. EUR.")}
    )
    occurred_at = AwareDateTimeField()
    lines = LineIn(many=True, required=False, max_length=500)


# The purchase body, the hot path of the POS, is checked by `lean_purchase` first: a few
# regular expressions instead of DRF's field machinery (about 1 ms of CPU per purchase). It only
# accepts what PurchaseRequest accepts, with the same values (tests/members/test_lean_purchase.py
# compares the two); anything else goes to PurchaseRequest, which gives the errors. The
# serializer stays the contract and the source of the OpenAPI schema.
_RECEIPT_ID = re.compile(r"[\x21-\x2e\x30-\x7e]{1,64}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_MONEY = re.compile(r"(?:0|[1-9][0-9]{0,9})(?:\.[0-9]{1,2})?")  # 12 digits, 2 decimal places
_QUANTITY = re.compile(r"(?:0|[1-9][0-9]{0,6})(?:\.[0-9]{1,3})?")  # 10 digits, 3 places
_CENT = Decimal("0.01")
_THOUSANDTH = Decimal("0.001")
_LINE_TEXT_MAX = 60
_PURCHASE_KEYS = frozenset(
    {"receipt_id", "card_number", "amount", "currency", "occurred_at", "lines"}
)
_LINE_KEYS = frozenset({"sku", "category", "quantity", "unit_price"})


def _lean_text(value) -> str | None:
    """LineIn's sku and category: a string of at most 60 printable characters once trimmed."""
    if type(value) is not str:
        return None
    value = value.strip()
    return value if len(value) <= _LINE_TEXT_MAX and value.isprintable() else None


def lean_purchase(data) -> dict | None:
    """PurchaseRequest's validated data for a well-formed body, or None to let it decide."""
    if type(data) is not dict or not data.keys() <= _PURCHASE_KEYS:
        return None
    receipt_id, currency = data.get("receipt_id"), data.get("currency")
    amount, occurred_at = data.get("amount"), data.get("occurred_at")
    if not (
        type(receipt_id) is str
        and type(currency) is str
        and type(amount) is str
        and type(occurred_at) is str
        and _RECEIPT_ID.fullmatch(receipt_id := receipt_id.strip())
        and _CURRENCY.fullmatch(currency := currency.strip())
        and _MONEY.fullmatch(amount)
    ):
        return None
    out = {"receipt_id": receipt_id}
    if "card_number" in data:
        card = data["card_number"]
        if card is not None:
            if type(card) is not str:
                return None
            card = normalize_card_number(card.strip())
            if not is_valid_card_number(card):
                return None
        out["card_number"] = card
    out["amount"] = amount = Decimal(amount).quantize(_CENT)
    if amount < _CENT:
        return None
    out["currency"] = currency
    moment, _reason = parse_aware_datetime(occurred_at)
    if moment is None:
        return None
    out["occurred_at"] = moment
    if "lines" in data:
        raw_lines = data["lines"]
        if type(raw_lines) is not list or len(raw_lines) > 500:
            return None
        lines = []
        for raw in raw_lines:
            if type(raw) is not dict or not raw.keys() <= _LINE_KEYS:
                return None
            sku = _lean_text(raw["sku"]) if "sku" in raw else ""
            category = _lean_text(raw["category"]) if "category" in raw else ""
            quantity, unit_price = raw.get("quantity"), raw.get("unit_price")
            if (
                sku is None
                or category is None
                or type(quantity) is not str
                or type(unit_price) is not str
                or not _QUANTITY.fullmatch(quantity)
                or not _MONEY.fullmatch(unit_price)
            ):
                return None
            quantity = Decimal(quantity).quantize(_THOUSANDTH)
            if quantity < _THOUSANDTH:
                return None
            lines.append(
                {
                    "sku": sku,
                    "category": category,
                    "quantity": quantity,
                    "unit_price": Decimal(unit_price).quantize(_CENT),
                }
            )
        out["lines"] = lines
    return out


def line_inputs(validated: dict) -> tuple[services.LineInput, ...]:
    return tuple(
        services.LineInput(
            sku=li.get("sku", ""),
            category=li.get("category", ""),
            quantity=li["quantity"],
            unit_price=li["unit_price"],
        )
        for li in validated.get("lines", ())
    )


class BreakdownItem(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    factor = serializers.CharField()
    amount = serializers.CharField()
    points = serializers.IntegerField()
    rule_id = serializers.IntegerField(allow_null=True)
    note = serializers.CharField(
        required=False, help_text="Campaign items only: why the campaign applied or not."
    )


class TierUpgradeOut(serializers.Serializer):
    from_ = serializers.CharField(allow_null=True)
    to = serializers.CharField()

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")  # a Python keyword
        return fields


class PurchaseResponse(serializers.Serializer):
    id = serializers.UUIDField()
    receipt_id = serializers.CharField()
    store = serializers.CharField()
    amount = serializers.CharField()
    currency = serializers.CharField()
    occurred_at = serializers.DateTimeField()
    points_earned = serializers.IntegerField()
    points_status = serializers.ChoiceField(choices=["pending", "available"])
    release_at = serializers.DateTimeField(allow_null=True)
    breakdown = BreakdownItem(many=True)
    card_number = serializers.CharField(allow_null=True)
    points_available = serializers.IntegerField(allow_null=True)
    points_pending = serializers.IntegerField(allow_null=True)
    tier = serializers.CharField(allow_null=True)
    tier_upgrade = TierUpgradeOut(
        allow_null=True, help_text="Set when this purchase moved the member up a tier."
    )


PURCHASE_EXAMPLE = {
    "receipt_id": "PAR01-2026-000123",
    "card_number": "9123456789016",
    "amount": "42.50",
    "currency": "EUR",
    "occurred_at": "2026-11-23T10:15:00+01:00",
    "lines": [
        {"sku": "CREME-50", "category": "beauty", "quantity": "1", "unit_price": "30.00"},
        {"sku": "SAVON-3", "category": "hygiene", "quantity": "2", "unit_price": "6.25"},
    ],
}


class PurchaseView(PosAPIView):
    @extend_schema(
        operation_id="record_purchase",
        summary="Record a purchase and credit its points (idempotent per receipt id)",
        request=PurchaseRequest,
        responses=api_responses(
            {201: PurchaseResponse, 200: PurchaseResponse},
            invalid(
                "card_number",
                "invalid_card_number",
                _("Not a valid card number (13 digits with a check digit)."),
            ),
            errors.ReceiptConflict,
            errors.WrongCurrency,
            errors.LinesMismatch,
            errors.InvalidOccurredAt,
            errors.UnknownCard,
            errors.MemberNotActive,
            instance="/api/v1/purchases/",
            body=True,
            idempotency_key=True,
        ),
        parameters=[IDEMPOTENCY_HEADER, *PROBLEM_HEADERS],
        examples=[OpenApiExample("A member's basket", value=PURCHASE_EXAMPLE, request_only=True)],
    )
    def post(self, request):
        def handle():
            v = lean_purchase(request.data)
            if v is None:
                data = PurchaseRequest(data=request.data)
                data.is_valid(raise_exception=True)
                v = data.validated_data
            outcome = services.record_purchase(
                store=self.client.store,
                receipt_id=v["receipt_id"],
                amount=v["amount"],
                currency=v["currency"],
                occurred_at=v["occurred_at"],
                card_number=v.get("card_number"),
                lines=line_inputs(v),
            )
            return json_response(outcome.body, 201 if outcome.created else 200)

        return idempotent(request, handle)


class ReturnLineIn(ClosedSerializer):
    sku = StrictCharField(max_length=60, allow_blank=True)
    quantity = DecimalStringField(max_digits=10, decimal_places=3, min_value=Decimal("0.001"))


class ReturnRequest(ClosedSerializer):
    return_id = StrictRegexField(
        r"^[\x21-\x7e]{1,64}$",
        error_messages={"invalid": _("1 to 64 printable characters, no spaces.")},
    )
    amount = money_field()
    occurred_at = AwareDateTimeField(required=False)
    purchase_store = StrictSlugField(
        required=False,
        help_text="Slug of the store where the purchase was made, when it is "
        "not the store posting the return.",
    )
    lines = ReturnLineIn(many=True, required=False, max_length=500)


class ReturnResponse(serializers.Serializer):
    id = serializers.UUIDField()
    return_id = serializers.CharField()
    receipt_id = serializers.CharField()
    store = serializers.CharField()
    amount = serializers.CharField()
    occurred_at = serializers.DateTimeField()
    points_reversed = serializers.IntegerField()
    purchase_returned_amount = serializers.CharField()
    card_number = serializers.CharField(allow_null=True)
    points_available = serializers.IntegerField(allow_null=True)
    points_pending = serializers.IntegerField(allow_null=True)
    tier = serializers.CharField(allow_null=True)


class ReturnView(PosAPIView):
    @extend_schema(
        operation_id="record_return",
        summary="Record a full or partial return of a purchase (idempotent per return id)",
        request=ReturnRequest,
        responses=api_responses(
            {201: ReturnResponse, 200: ReturnResponse},
            invalid("return_id", "invalid", _("1 to 64 printable characters, no spaces.")),
            errors.UnknownReceipt,
            Case.of(
                errors.UnknownReceipt,
                _("No store of this program has this slug."),
                field="purchase_store",
                name="unknown_purchase_store",
            ),
            NOT_FOUND,
            errors.ReturnConflict,
            errors.ReturnExceedsPurchase,
            errors.LinesMismatch,
            errors.InvalidOccurredAt,
            instance="/api/v1/purchases/PAR01-2026-000123/returns/",
            body=True,
            idempotency_key=True,
        ),
        parameters=[RECEIPT_ID_PATH, IDEMPOTENCY_HEADER, *PROBLEM_HEADERS],
        examples=[
            OpenApiExample(
                "One item back",
                value={
                    "return_id": "R-PAR01-000045",
                    "amount": "6.25",
                    "occurred_at": "2026-11-25T17:40:00+01:00",
                    "lines": [{"sku": "SAVON-3", "quantity": "1"}],
                },
                request_only=True,
            )
        ],
    )
    def post(self, request, receipt_id):
        def handle():
            data = ReturnRequest(data=request.data)
            data.is_valid(raise_exception=True)
            v = data.validated_data
            purchase_store = None
            if v.get("purchase_store"):
                purchase_store = Store.objects.filter(
                    program=self.client.program, slug=v["purchase_store"]
                ).first()
                if purchase_store is None:
                    raise errors.UnknownReceipt(
                        _("No store of this program has this slug."), field="purchase_store"
                    )
            outcome = services.record_return(
                store=self.client.store,
                receipt_id=receipt_id,
                return_id=v["return_id"],
                amount=v["amount"],
                occurred_at=v.get("occurred_at"),
                purchase_store=purchase_store,
                lines=tuple(
                    services.ReturnLineInput(sku=li["sku"], quantity=li["quantity"])
                    for li in v.get("lines", ())
                ),
            )
            return json_response(outcome.body, 201 if outcome.created else 200)

        return idempotent(request, handle)


class QuoteRequest(ClosedSerializer):
    card_number = CardNumberField(required=False, allow_null=True)
    amount = money_field()
    currency = StrictRegexField(r"^[A-Z]{3}$")
    occurred_at = AwareDateTimeField(required=False)
    lines = LineIn(many=True, required=False, max_length=500)


class QuoteResponse(serializers.Serializer):
    amount = serializers.CharField()
    currency = serializers.CharField()
    points = serializers.IntegerField()
    breakdown = BreakdownItem(many=True)
    card_number = serializers.CharField(allow_null=True)
    tier = serializers.CharField(allow_null=True)


class QuoteView(PosAPIView):
    @extend_schema(
        operation_id="quote_purchase",
        summary="The points a basket would earn; writes nothing",
        request=QuoteRequest,
        responses=api_responses(
            {200: QuoteResponse},
            invalid("amount", "required", _("This field is required.")),
            errors.WrongCurrency,
            errors.LinesMismatch,
            errors.UnknownCard,
            errors.MemberNotActive,
            instance="/api/v1/purchases/quote/",
            body=True,
        ),
        parameters=PROBLEM_HEADERS,
    )
    def post(self, request):
        data = QuoteRequest(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        body = services.quote_purchase(
            store=self.client.store,
            amount=v["amount"],
            currency=v["currency"],
            occurred_at=v.get("occurred_at"),
            card_number=v.get("card_number"),
            lines=line_inputs(v),
        )
        return Response(body)
