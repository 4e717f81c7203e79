"""POS endpoints of rewards and vouchers: the catalogue, redeeming at the till, validating and
consuming a voucher. Thin: validation here, every write in rewards/services.py."""

from django.db.models import Prefetch, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from loyalty.api import PosAPIView, idempotent
from loyalty.errors import DomainError
from loyalty.models import Tier
from loyalty.openapi import NOT_FOUND, PROBLEM_HEADERS, Case, api_responses, invalid
from members import errors as member_errors
from members.api import (
    CARD_NUMBER_PATH,
    CARD_NUMBER_SCHEMA,
    IDEMPOTENCY_HEADER,
    MAX_ID,
    PATH_SEGMENT,
    ClosedSerializer,
    StrictIntegerField,
    StrictRegexField,
    _render,
)
from members.selectors import member_by_card

from . import errors, services
from .models import Redemption, Reward


class IdempotencyKeyRequired(DomainError):
    code = "idempotency_key_required"
    status = 428
    field = "Idempotency-Key"
    title = _(
        "Redeeming at the till needs an Idempotency-Key header, so that a retry cannot "
        "redeem twice."
    )


VOUCHER_CODE_PATH = OpenApiParameter(
    "code",
    {"type": "string", "pattern": PATH_SEGMENT, "maxLength": 32},
    OpenApiParameter.PATH,
    description="As printed (XXXX-XXXX-XXXX); case, spaces and dashes are ignored",
)


# Catalogue ------------------------------------------------------------------------------------


class RewardOut(serializers.Serializer):
    id = serializers.IntegerField()
    name_fr = serializers.CharField()
    name_en = serializers.CharField()
    kind = serializers.ChoiceField(choices=Reward.Kind.choices)
    value = serializers.DecimalField(max_digits=10, decimal_places=2, allow_null=True)
    sku = serializers.CharField()
    partner_name = serializers.CharField()
    points_cost = serializers.IntegerField()
    stock = serializers.IntegerField(allow_null=True, help_text="null: unlimited")
    tiers = serializers.ListField(
        child=serializers.CharField(), help_text="Tiers allowed; empty: every tier."
    )
    valid_until = serializers.DateTimeField(allow_null=True)
    voucher_valid_days = serializers.IntegerField()
    available = serializers.BooleanField(
        allow_null=True, help_text="With card_number: can this member redeem it now?"
    )
    unavailable_reason = serializers.CharField(
        allow_null=True,
        help_text="With card_number: the error code a redemption would get "
        "(not_enough_points, out_of_stock, tier_not_allowed...).",
    )


class RewardListView(PosAPIView):
    @extend_schema(
        operation_id="list_rewards",
        summary="The program's reward catalogue (optionally as one member sees it)",
        parameters=[
            OpenApiParameter(
                "card_number",
                CARD_NUMBER_SCHEMA,
                description="13 digits: the catalogue as this member sees it",
            ),
            *PROBLEM_HEADERS,
        ],
        responses=api_responses(
            {200: RewardOut(many=True)},
            Case.of(member_errors.MemberNotFound, field="card_number"),
            instance="/api/v1/rewards/",
        ),
    )
    def get(self, request):
        program = self.client.program
        now = timezone.now()
        member = None
        card = request.query_params.get("card_number", "").strip()
        if card:
            member = member_by_card(program, card)
        rewards = (
            Reward.objects.filter(program=program, is_active=True)
            .filter(Q(valid_from__isnull=True) | Q(valid_from__lte=now))
            .filter(Q(valid_until__isnull=True) | Q(valid_until__gt=now))
            .prefetch_related(Prefetch("tiers", queryset=Tier.objects.order_by("rank")))
            .order_by("display_order", "points_cost", "id")
        )
        body = []
        for reward in rewards:
            tiers = list(reward.tiers.all())
            reason = None
            if member is not None:
                problem = services.availability_error(
                    reward, member, now, tier_ids={t.pk for t in tiers}
                )
                if problem is None and member.points_available < reward.points_cost:
                    problem = errors.NotEnoughPoints()
                if problem is None and reward.stock == 0:
                    problem = errors.OutOfStock()
                reason = problem.code if problem else None
            body.append(
                {
                    **reward_body(reward),
                    "points_cost": reward.points_cost,
                    "stock": reward.stock,
                    "tiers": [t.name for t in tiers],
                    "valid_until": reward.valid_until,
                    "voucher_valid_days": reward.voucher_valid_days,
                    "available": None if member is None else reason is None,
                    "unavailable_reason": reason,
                }
            )
        return Response(body)


# Vouchers -------------------------------------------------------------------------------------


class VoucherRewardOut(serializers.Serializer):
    id = serializers.IntegerField()
    name_fr = serializers.CharField()
    name_en = serializers.CharField()
    kind = serializers.ChoiceField(choices=Reward.Kind.choices)
    value = serializers.CharField(allow_null=True)
    sku = serializers.CharField()
    partner_name = serializers.CharField()


class VoucherOut(serializers.Serializer):
    code = serializers.CharField(help_text="As printed: XXXX-XXXX-XXXX")
    status = serializers.ChoiceField(
        choices=Redemption.Status.choices,
        help_text="`expired` as soon as the date has passed, even before the nightly job.",
    )
    valid = serializers.BooleanField(help_text="Can be used now.")
    reward = VoucherRewardOut()
    card_number = serializers.CharField()
    member_name = serializers.CharField()
    points_spent = serializers.IntegerField()
    issued_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    used_at = serializers.DateTimeField(allow_null=True)
    used_store = serializers.CharField(allow_null=True)
    used_receipt_id = serializers.CharField(allow_null=True)


def reward_body(reward: Reward) -> dict:
    """What a till needs to know of a reward (shared by the catalogue and vouchers)."""
    return {
        "id": reward.pk,
        "name_fr": reward.name_fr,
        "name_en": reward.name_en,
        "kind": reward.kind,
        "value": str(reward.value) if reward.value is not None else None,
        "sku": reward.sku,
        "partner_name": reward.partner_name,
    }


def voucher_body(voucher: Redemption, now=None) -> dict:
    now = now or timezone.now()
    status = voucher.status
    if status == Redemption.Status.ISSUED and voucher.expires_at <= now:
        status = Redemption.Status.EXPIRED
    return {
        "code": services.format_code(voucher.code),
        "status": status,
        "valid": status == Redemption.Status.ISSUED,
        "reward": reward_body(voucher.reward),
        "card_number": voucher.member.card_number,
        "member_name": voucher.member.full_name,
        "points_spent": voucher.points_spent,
        "issued_at": voucher.issued_at,
        "expires_at": voucher.expires_at,
        "used_at": voucher.used_at,
        "used_store": voucher.used_store.slug if voucher.used_store_id else None,
        "used_receipt_id": voucher.used_receipt_id or None,
    }


class VoucherView(PosAPIView):
    @extend_schema(
        operation_id="validate_voucher",
        summary="Validate a voucher: reward, value, status, member",
        parameters=[VOUCHER_CODE_PATH, *PROBLEM_HEADERS],
        responses=api_responses(
            {200: VoucherOut},
            errors.VoucherNotFound,
            NOT_FOUND,
            instance="/api/v1/vouchers/K2Q9-7VRU-9F5B/",
        ),
    )
    def get(self, request, code):
        voucher = services.find_voucher(self.client.program, code)
        return Response(voucher_body(voucher))


class VoucherUseRequest(ClosedSerializer):
    receipt_id = StrictRegexField(
        r"^[!-~]{1,64}$",
        help_text="The receipt the voucher is used on (1 to 64 printable characters).",
    )


def _use_voucher_schema(path: str) -> dict:
    """What `POST vouchers/<code>/use/` and its alias document (all but the operation id)."""
    return {
        "summary": "Use a voucher at the till, exactly once (idempotent per receipt id)",
        "request": VoucherUseRequest,
        "parameters": [VOUCHER_CODE_PATH, *PROBLEM_HEADERS],
        "responses": api_responses(
            {200: VoucherOut},
            invalid("receipt_id", "required", _("This field is required.")),
            errors.VoucherNotFound,
            NOT_FOUND,
            errors.VoucherAlreadyUsed,
            errors.VoucherExpired,
            errors.VoucherCancelled,
            instance=f"/api/v1/vouchers/K2Q9-7VRU-9F5B/{path}/",
            body=True,
        ),
        "examples": [
            OpenApiExample(
                "At the till", value={"receipt_id": "PAR01-2026-000124"}, request_only=True
            )
        ],
    }


class VoucherUseView(PosAPIView):
    """`POST vouchers/<code>/use/`: a voucher used at the till (points are redeemed for a
    voucher elsewhere: `members/<card>/redemptions/`)."""

    @extend_schema(operation_id="use_voucher", **_use_voucher_schema("use"))
    def post(self, request, code):
        data = VoucherUseRequest(data=request.data)
        data.is_valid(raise_exception=True)
        voucher, _created = services.use_voucher(
            program=self.client.program,
            code=code,
            store=self.client.store,
            receipt_id=data.validated_data["receipt_id"],
        )
        return Response(voucher_body(voucher))


class VoucherUseAliasView(VoucherUseView):
    """`POST vouchers/<code>/redeem/`: the same as `use/`, kept for the tills that call it;
    documented as deprecated."""

    @extend_schema(
        operation_id="consume_voucher",
        deprecated=True,
        description="Deprecated alias of `POST /api/v1/vouchers/{code}/use/`, kept for "
        "existing tills: same request, same answers.",
        **_use_voucher_schema("redeem"),
    )
    def post(self, request, code):
        return super().post(request, code)


class RedemptionOut(VoucherOut):
    points_available = serializers.IntegerField(help_text="The member's balance after it.")


class RedeemRequest(ClosedSerializer):
    reward_id = StrictIntegerField(min_value=1, max_value=MAX_ID)


class MemberRedemptionView(PosAPIView):
    @extend_schema(
        operation_id="redeem_reward",
        summary="Redeem a reward for a member at the till (needs an Idempotency-Key)",
        request=RedeemRequest,
        responses=api_responses(
            {201: RedemptionOut},
            invalid("reward_id", "required", _("This field is required.")),
            Case.of(member_errors.MemberNotFound, field="card_number"),
            errors.RewardNotFound,
            NOT_FOUND,
            member_errors.MemberNotActive,
            errors.RewardNotAvailable,
            errors.TierNotAllowed,
            errors.NotEnoughPoints,
            errors.LimitReached,
            errors.OutOfStock,
            IdempotencyKeyRequired,
            instance="/api/v1/members/9123456789016/redemptions/",
            body=True,
            idempotency_key=True,
        ),
        parameters=[
            CARD_NUMBER_PATH,
            # Required here (428 without it): a redemption has no natural key.
            OpenApiParameter(
                IDEMPOTENCY_HEADER.name,
                IDEMPOTENCY_HEADER.type,
                OpenApiParameter.HEADER,
                required=True,
                description=IDEMPOTENCY_HEADER.description,
            ),
            *PROBLEM_HEADERS,
        ],
        examples=[OpenApiExample("A 10 € voucher", value={"reward_id": 2}, request_only=True)],
    )
    def post(self, request, card_number):
        if not request.headers.get("Idempotency-Key"):
            raise IdempotencyKeyRequired()

        def handle():
            data = RedeemRequest(data=request.data)
            data.is_valid(raise_exception=True)
            program = self.client.program
            member = member_by_card(program, card_number)
            reward = (
                Reward.objects.filter(program=program, pk=data.validated_data["reward_id"])
                .prefetch_related("tiers")
                .first()
            )
            if reward is None:
                raise errors.RewardNotFound()
            voucher = services.redeem(
                member=member,
                reward=reward,
                channel=Redemption.Channel.POS,
                store=self.client.store,
            )
            voucher.member = member
            body = voucher_body(voucher)
            body["points_available"] = member.points_available
            return Response(body, status=201)

        return idempotent(request, lambda: _render(self, request, handle()))
