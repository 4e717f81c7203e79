"""POS endpoints for members: enrolment, lookup and points history."""

import re

from django.db.models import Q
from django.utils import timezone
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response

from loyalty.api import PosAPIView, idempotent
from loyalty.openapi import PROBLEM_HEADERS, Case, api_responses, invalid

from .. import errors, services
from ..cards import is_valid_card_number, normalize_card_number
from ..models import Member, PointsEntry
from ..selectors import member_by_card, member_progress
from .fields import (
    CARD_NUMBER_PATH,
    CARD_NUMBER_SCHEMA,
    IDEMPOTENCY_HEADER,
    ClosedSerializer,
    StrictBooleanField,
    StrictCharField,
    StrictEmailField,
    StrictRegexField,
    _render,
)

# Digits, spaces, dots and dashes, a leading + allowed, no space at either end (the field trims
# them); at most 20 characters, so at most 20 once the spaces, dots and dashes are dropped
# (Member.phone).
PHONE_PATTERN = r"^\+?[0-9][0-9 .-]{4,17}[0-9.-]$"


def normalize_phone(value: str) -> str:
    """A phone as members' rows store it: its digits and a leading +, without separators."""
    return "".join(ch for ch in value if ch.isdigit() or ch == "+")


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
        return normalize_phone(value)

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
            value = normalize_phone(value)
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
