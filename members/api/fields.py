"""Fields, OpenAPI parameters and helpers shared by the POS endpoints of members and rewards."""

import re
from datetime import UTC, datetime
from decimal import Decimal

from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.utils import OpenApiParameter, extend_schema_field
from rest_framework import serializers

from ..cards import is_valid_card_number, normalize_card_number

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

    target_class = "members.api.fields.CardNumberField"

    def map_serializer_field(self, auto_schema, direction):
        return {**CARD_NUMBER_SCHEMA, "maxLength": self.target.max_length}


class DecimalStringSchema(OpenApiSerializerFieldExtension):
    """A DecimalStringField's exact pattern: digits, at most `decimal_places` decimals after a
    point, at most `max_digits - decimal_places` digits before it (leading zeros aside), and not
    zero when its minimum is the smallest positive step (an amount)."""

    target_class = "members.api.fields.DecimalStringField"

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


def _render(view, request, response):
    """Render a DRF Response now, so that idempotent() can store its bytes."""
    response = view.finalize_response(request, response)
    response.render()
    return response
