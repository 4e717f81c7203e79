"""POS endpoints for purchases, returns and quotes, and the lean check of a purchase body."""

import re
from decimal import Decimal

from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from loyalty.api import PosAPIView, idempotent, json_response
from loyalty.models import Store
from loyalty.openapi import NOT_FOUND, PROBLEM_HEADERS, Case, api_responses, invalid

from .. import errors, services
from ..cards import is_valid_card_number, normalize_card_number
from .fields import (
    IDEMPOTENCY_HEADER,
    RECEIPT_ID_PATH,
    AwareDateTimeField,
    CardNumberField,
    ClosedSerializer,
    DecimalStringField,
    StrictCharField,
    StrictRegexField,
    StrictSlugField,
    money_field,
    parse_aware_datetime,
)


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
