"""Business actions on members: enrolment, purchases, returns, adjustments, quotes.

Every action runs in one transaction. Points move only through members/ledger.py, under the
lock of the member row. Lock order, wherever several rows are locked: member, then purchase.
Services open `transaction.atomic()` without `durable=True` so that an API call can claim its
Idempotency-Key in the same transaction as the writes it protects (`loyalty.api.idempotent`).
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext

from loyalty import rules
from loyalty.models import Program, Store
from loyalty.selectors import entry_tier, program_rules, tier_bonus
from loyalty.sql import insert_with_children

from . import campaigns, errors, ledger, tiers
from .campaigns import lifecycle
from .cards import new_card_number, new_referral_code, normalize_card_number
from .ledger import Bucket, Kind, Posting
from .models import Member, PointsEntry, Purchase, PurchaseLine, PurchaseReturn

CENT = Decimal("0.01")
CLOCK_SKEW = timedelta(minutes=5)  # a till's clock may run a little ahead of ours


@dataclass(frozen=True, slots=True)
class LineInput:
    sku: str
    category: str
    quantity: Decimal
    unit_price: Decimal

    @property
    def amount(self) -> Decimal:
        return (self.quantity * self.unit_price).quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True, slots=True)
class ReturnLineInput:
    sku: str
    quantity: Decimal


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an idempotent action answers: `created` is False for a replay; `body` is the JSON
    text of the first answer, identical byte for byte on every replay."""

    created: bool
    body: str


def _dump(body: dict) -> str:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def _hash(payload: dict) -> str:
    return hashlib.sha256(
        json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()
    ).hexdigest()


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


# Enrolment ------------------------------------------------------------------------------------


def _find_existing_member(program: Program, email: str, phone: str) -> Member | None:
    by_email = Member.objects.filter(program=program, email=email).first() if email else None
    by_phone = Member.objects.filter(program=program, phone=phone).first() if phone else None
    if by_email and by_phone and by_email.pk != by_phone.pk:
        raise errors.EnrolmentConflict()
    return by_email or by_phone


def enrol_member(
    *,
    program: Program,
    channel: str,
    email: str = "",
    phone: str = "",
    first_name: str = "",
    last_name: str = "",
    birth_date=None,
    preferred_language: str = "",
    marketing_consent: bool = False,
    store: Store | None = None,
    referral_code: str = "",
) -> tuple[Member, bool]:
    """Enrol a member, or return the existing one with the same email or phone (created=False).

    Two concurrent enrolments with the same email or phone create one member: the unique
    constraint decides and the loser returns the winner's member.
    """
    email = email.strip().lower()
    phone = phone.strip()
    existing = _find_existing_member(program, email, phone)
    if existing:
        return existing, False
    referrer = None
    if referral_code:
        referrer = Member.objects.filter(
            program=program, referral_code=referral_code.strip().upper()
        ).first()
        if referrer is None:
            raise errors.UnknownReferralCode()
    now = timezone.now()
    tier = entry_tier(program)
    for _attempt in range(5):
        try:
            with transaction.atomic():
                member = Member.objects.create(
                    program=program,
                    card_number=new_card_number(),
                    referral_code=new_referral_code(),
                    email=email,
                    phone=phone,
                    first_name=first_name.strip(),
                    last_name=last_name.strip(),
                    birth_date=birth_date,
                    preferred_language=preferred_language or "fr",
                    marketing_consent=marketing_consent,
                    marketing_consent_at=now if marketing_consent else None,
                    enrolled_at=now,
                    enrolment_channel=channel,
                    enrolment_store=store,
                    referred_by=referrer,
                    tier=tier,
                )
                lifecycle.grant_welcome(member, now=now)  # welcome campaigns (members/lifecycle)
            return member, True
        except IntegrityError:
            existing = _find_existing_member(program, email, phone)
            if existing:
                return existing, False
            # Otherwise a random card number or referral code collided: draw again.
    raise RuntimeError("could not draw a free card number")


# Purchases ------------------------------------------------------------------------------------


def _check_occurred_at(program: Program, occurred_at: datetime, now: datetime) -> None:
    if occurred_at > now + CLOCK_SKEW:
        raise errors.InvalidOccurredAt(gettext("The purchase date is in the future."))
    if occurred_at < now - timedelta(days=program.backdating_days):
        raise errors.InvalidOccurredAt(
            gettext("The purchase is older than the program's back-dating window (%(days)d days).")
            % {"days": program.backdating_days}
        )


def _check_basket(program: Program, amount: Decimal, currency: str, lines) -> None:
    if currency != program.currency:
        raise errors.WrongCurrency(
            gettext("This program's currency is %(currency)s.") % {"currency": program.currency}
        )
    if lines and sum((line.amount for line in lines), Decimal(0)) != amount:
        total = sum((line.amount for line in lines), Decimal(0))
        raise errors.LinesMismatch(
            gettext("The lines add up to %(total)s, the amount is %(amount)s.")
            % {"total": total, "amount": amount}
        )


def _member_for_card(program: Program, card_number: str, *, lock: bool) -> Member:
    try:
        if lock:
            member = ledger.lock_member_by_card(program.pk, card_number)
        else:
            member = Member.objects.select_related("tier").get(
                program=program, card_number=card_number
            )
    except Member.DoesNotExist:
        raise errors.UnknownCard() from None
    if member.status != Member.Status.ACTIVE:
        raise errors.MemberNotActive()
    return member


def _basket(store: Store, amount: Decimal, occurred_at: datetime, lines) -> rules.Basket:
    program = store.program
    return rules.Basket(
        amount=amount,
        channel=store.channel,
        store_id=store.pk,
        local_date=occurred_at.astimezone(program.tzinfo).date(),
        lines=tuple(
            rules.Line(sku=li.sku, category=li.category, quantity=li.quantity, amount=li.amount)
            for li in lines
        ),
    )


def _breakdown(earning: rules.Earning) -> list[dict]:
    return [
        {
            "code": item.code,
            "name": item.name,
            "factor": str(item.factor),
            "amount": str(item.amount),
            "points": item.points,
            "rule_id": item.rule_id,
            **({"note": item.note} if item.note else {}),
        }
        for item in earning.items
    ]


def _member_summary(member: Member | None) -> dict:
    if member is None:
        return {"card_number": None, "points_available": None, "points_pending": None, "tier": None}
    return {
        "card_number": member.card_number,
        "points_available": member.points_available,
        "points_pending": member.points_pending,
        "tier": member.tier.name if member.tier_id else None,
    }


def record_purchase(
    *,
    store: Store,
    receipt_id: str,
    amount: Decimal,
    currency: str,
    occurred_at: datetime,
    card_number: str | None = None,
    lines: tuple[LineInput, ...] = (),
) -> Outcome:
    """Record a purchase and credit its points, exactly once per (store, receipt id).

    A replay with the same content returns the first answer (created=False); the same receipt
    id with other content raises ReceiptConflict. Points are pending until the program's
    return window closes (available at once when the window is 0 days).
    """
    program = store.program
    card_number = normalize_card_number(card_number) if card_number else None
    request_hash = _hash(
        {
            "receipt_id": receipt_id,
            "amount": str(amount),
            "currency": currency,
            "occurred_at": _iso(occurred_at),
            "card_number": card_number,
            "lines": [[li.sku, li.category, str(li.quantity), str(li.unit_price)] for li in lines],
        }
    )
    try:
        return _record_new_purchase(
            store,
            program,
            receipt_id,
            amount,
            currency,
            occurred_at,
            card_number,
            lines,
            request_hash,
        )
    except (IntegrityError, errors.DomainError):
        # Either the unique (store, receipt_id) constraint decided (an earlier or concurrent
        # request recorded this receipt), or a check failed that may no longer hold for a
        # late retry (its date left the back-dating window, the member was suspended since).
        # Answer as the first request was answered, refuse another content, or re-raise.
        existing = Purchase.objects.filter(store=store, receipt_id=receipt_id).first()
        if existing is None:
            raise
        if existing.request_hash != request_hash:
            raise errors.ReceiptConflict() from None
        return Outcome(created=False, body=existing.response)


def _record_new_purchase(
    store, program, receipt_id, amount, currency, occurred_at, card_number, lines, request_hash
) -> Outcome:
    now = timezone.now()
    _check_basket(program, amount, currency, lines)
    _check_occurred_at(program, occurred_at, now)
    grid = program_rules(program)
    with transaction.atomic():
        member = _member_for_card(program, card_number, lock=True) if card_number else None
        earning = None
        if member:
            basket = _basket(store, amount, occurred_at, lines)
            earning = rules.compute_points(basket, grid, tier_bonus(member.tier))
            # Campaign lines, their budgets consumed under the member's lock (members/campaigns).
            earning = campaigns.apply_to_purchase(
                program=program,
                store=store,
                member=member,
                basket=basket,
                earning=earning,
                occurred_at=occurred_at,
            )
        points = earning.points if earning else 0
        window = timedelta(days=program.return_window_days)
        is_pending = member is not None and points > 0 and window > timedelta(0)
        purchase = Purchase(
            program=program,
            store=store,
            member=member,
            receipt_id=receipt_id,
            total_amount=amount,
            currency=currency,
            occurred_at=occurred_at,
            points_earned=points,
            breakdown=_breakdown(earning) if earning else [],
            release_at=occurred_at + window if is_pending else None,
            released_at=None if is_pending else now,
            request_hash=request_hash,
        )
        # The member's balances after this purchase are known before writing, so the answer
        # is stored with the row in one INSERT (replays return it byte for byte).
        if member is not None and points:
            bucket = Bucket.PENDING if is_pending else Bucket.AVAILABLE
            bonus = earning.campaign_points  # campaign lines: a bonus row of the purchase
            postings = [
                Posting(Kind.EARN, bucket, points - bonus),
                Posting(Kind.BONUS, bucket, bonus),
            ]
        else:
            postings = []
        contribution, upgrade = Decimal(0), None
        if member is not None:
            contribution = tiers.purchase_contribution(program, amount, points)
            upgrade = tiers.upgrade_for_purchase(
                program, member, contribution=contribution, occurred_at=occurred_at, now=now
            )
        summary = _member_summary(member)
        if postings:
            key = "points_pending" if is_pending else "points_available"
            summary[key] += points
        if upgrade:
            summary["tier"] = upgrade.to_tier.name
        purchase.response = _dump(
            {
                "id": str(purchase.public_id),
                "receipt_id": receipt_id,
                "store": store.slug,
                "amount": str(amount),
                "currency": currency,
                "occurred_at": _iso(occurred_at),
                "points_earned": points,
                "points_status": "pending" if is_pending else "available",
                "release_at": _iso(purchase.release_at),
                "breakdown": purchase.breakdown,
                **summary,
                "tier_upgrade": (
                    {
                        "from": upgrade.from_tier.name if upgrade.from_tier else None,
                        "to": upgrade.to_tier.name,
                    }
                    if upgrade
                    else None
                ),
            }
        )
        line_points = earning.line_points if earning else (0,) * len(lines)
        # The purchase and its lines: one statement on PostgreSQL (loyalty/sql.py).
        insert_with_children(
            purchase,
            [
                PurchaseLine(
                    line_no=i,
                    sku=li.sku,
                    category=li.category,
                    quantity=li.quantity,
                    unit_price=li.unit_price,
                    line_amount=li.amount,
                    points_earned=line_points[i - 1],
                )
                for i, li in enumerate(lines, start=1)
            ],
            "purchase_id",
        )
        if earning is not None and earning.campaigns:
            campaigns.record_awards(earning, purchase)
        if member is not None:
            ledger.post(
                member,
                postings,
                effective_at=occurred_at,
                purchase=purchase,
                store=store,
                is_activity=True,
                qualifying=contribution,
            )
            if upgrade:
                tiers.apply_upgrade(member, upgrade, purchase=purchase, now=now)
    return Outcome(created=True, body=purchase.response)


def quote_purchase(
    *,
    store: Store,
    amount: Decimal,
    currency: str,
    occurred_at: datetime | None = None,
    card_number: str | None = None,
    lines: tuple[LineInput, ...] = (),
) -> dict:
    """The points a basket would earn, with its breakdown. Writes nothing."""
    program = store.program
    _check_basket(program, amount, currency, lines)
    occurred_at = occurred_at or timezone.now()
    member = (
        _member_for_card(program, normalize_card_number(card_number), lock=False)
        if card_number
        else None
    )
    basket = _basket(store, amount, occurred_at, lines)
    earning = rules.compute_points(
        basket, program_rules(program), tier_bonus(member.tier) if member else None
    )
    earning = campaigns.quote_campaigns(
        program=program, member=member, basket=basket, earning=earning, occurred_at=occurred_at
    )
    return {
        "amount": str(amount),
        "currency": currency,
        "points": earning.points,
        "breakdown": _breakdown(earning),
        "card_number": member.card_number if member else None,
        "tier": member.tier.name if member and member.tier_id else None,
    }


# Returns --------------------------------------------------------------------------------------


def record_return(
    *,
    store: Store,
    receipt_id: str,
    return_id: str,
    amount: Decimal,
    occurred_at: datetime | None = None,
    purchase_store: Store | None = None,
    lines: tuple[ReturnLineInput, ...] = (),
) -> Outcome:
    """Record a full or partial return and reverse the points earned on what came back.

    Any store of the purchase's program may post it. By line where lines are given, pro rata
    otherwise; the total returned never exceeds the purchase. Reversals come out of pending
    points while the purchase's return window is open, out of available points after (which
    may go negative if they were spent). Idempotent per (purchase, return id).
    """
    program = store.program
    purchase_store = purchase_store or store
    if purchase_store.program_id != program.pk:
        raise errors.UnknownReceipt()
    request_hash = _hash(
        {
            "return_id": return_id,
            "amount": str(amount),
            "occurred_at": _iso(occurred_at),
            "purchase_store": purchase_store.pk,
            "lines": [[li.sku, str(li.quantity)] for li in lines],
        }
    )
    # Hashed as sent: a retry of a return sent without a date is still the same request.
    occurred_at = occurred_at or timezone.now()
    head = (
        Purchase.objects.filter(program=program, store=purchase_store, receipt_id=receipt_id)
        .values("pk", "member_id")
        .first()
    )
    if head is None:
        raise errors.UnknownReceipt()
    try:
        return _record_new_return(store, head, return_id, amount, occurred_at, lines, request_hash)
    except IntegrityError:
        existing = PurchaseReturn.objects.filter(
            purchase_id=head["pk"], return_id=return_id
        ).first()
        if existing is None:
            raise
        if existing.request_hash != request_hash:
            raise errors.ReturnConflict() from None
        return Outcome(created=False, body=existing.response)


def _record_new_return(store, head, return_id, amount, occurred_at, lines, request_hash):
    now = timezone.now()
    if occurred_at > now + CLOCK_SKEW:
        raise errors.InvalidOccurredAt(gettext("The return date is in the future."))
    with transaction.atomic():
        # Lock order: member, then purchase.
        member = (
            ledger.lock_member(Member.objects.filter(pk=head["member_id"]))
            if head["member_id"]
            else None
        )
        purchase = Purchase.objects.select_for_update().get(pk=head["pk"])
        existing = PurchaseReturn.objects.filter(purchase=purchase, return_id=return_id).first()
        if existing is not None:
            raise IntegrityError("return already recorded")  # answered by the caller
        if occurred_at < purchase.occurred_at:
            raise errors.InvalidOccurredAt(gettext("The return is dated before the purchase."))
        returned_after = purchase.returned_amount + amount
        if returned_after > purchase.total_amount:
            raise errors.ReturnExceedsPurchase(
                gettext("%(left)s is left to return.")
                % {"left": purchase.total_amount - purchase.returned_amount}
            )
        reverse = _points_to_reverse(purchase, amount, lines)
        purchase_return = PurchaseReturn(
            purchase=purchase,
            store=store,
            return_id=return_id,
            return_amount=amount,
            occurred_at=occurred_at,
            points_reversed=reverse,
            request_hash=request_hash,
        )
        is_pending = purchase.released_at is None
        summary = _member_summary(member)
        if member is not None and reverse:
            summary["points_pending" if is_pending else "points_available"] -= reverse
        purchase_return.response = _dump(
            {
                "id": str(purchase_return.public_id),
                "return_id": return_id,
                "receipt_id": purchase.receipt_id,
                "store": store.slug,
                "amount": str(amount),
                "occurred_at": _iso(occurred_at),
                "points_reversed": reverse,
                "purchase_returned_amount": str(returned_after),
                **summary,
            }
        )
        purchase_return.save(force_insert=True)
        Purchase.objects.filter(pk=purchase.pk).update(
            returned_amount=returned_after, points_reversed=purchase.points_reversed + reverse
        )
        if member is not None and reverse:
            bucket = Bucket.PENDING if is_pending else Bucket.AVAILABLE
            ledger.post(
                member,
                [Posting(Kind.RETURN, bucket, -reverse)],
                effective_at=occurred_at,
                purchase=purchase,
                purchase_return=purchase_return,
                store=store,
            )
    return Outcome(created=True, body=purchase_return.response)


def _points_to_reverse(purchase: Purchase, amount: Decimal, lines) -> int:
    """Points to take back for this return. Computed on cumulative totals, so that returning
    everything in several parts takes back exactly what was earned, never a point more."""
    earned = purchase.points_earned
    remaining = earned - purchase.points_reversed
    is_last = purchase.returned_amount + amount == purchase.total_amount
    if not lines:
        if is_last or not remaining:
            return remaining
        target = rules.prorate(earned, purchase.returned_amount + amount, purchase.total_amount)
        return max(0, min(remaining, target - purchase.points_reversed))
    by_sku = {}
    for line in purchase.lines.select_for_update().order_by("line_no"):
        by_sku.setdefault(line.sku, []).append(line)
    reverse = 0
    returned_value = Decimal(0)
    for item in lines:
        left = item.quantity
        for line in by_sku.get(item.sku, []):
            free = line.quantity - line.returned_quantity
            take = min(free, left)
            if take <= 0:
                continue
            before = rules.prorate(line.points_earned, line.returned_quantity, line.quantity)
            after_qty = line.returned_quantity + take
            after = rules.prorate(line.points_earned, after_qty, line.quantity)
            reverse += after - before
            returned_value += (take * line.unit_price).quantize(CENT, rounding=ROUND_HALF_UP)
            PurchaseLine.objects.filter(pk=line.pk).update(returned_quantity=after_qty)
            line.returned_quantity = after_qty
            left -= take
            if left == 0:
                break
        if left > 0:
            raise errors.ReturnExceedsPurchase(
                gettext("More of %(sku)s returned than was bought.") % {"sku": repr(item.sku)},
                field="lines",
            )
    if returned_value != amount:
        raise errors.LinesMismatch(
            gettext("The returned lines are worth %(value)s, the amount is %(amount)s.")
            % {"value": returned_value, "amount": amount}
        )
    return remaining if is_last else min(remaining, reverse)


# Staff adjustments ----------------------------------------------------------------------------


def adjust_points(*, member: Member, points: int, reason: str, staff_user) -> list[PointsEntry]:
    """Add (positive) or remove (negative) available points by hand, with a mandatory reason
    recorded with the staff user."""
    reason = (reason or "").strip()
    if not points or not reason:
        raise errors.InvalidAdjustment()
    with transaction.atomic():
        locked = ledger.lock_member(Member.objects.filter(pk=member.pk))
        rows = ledger.post(
            locked,
            [Posting(Kind.ADJUST, Bucket.AVAILABLE, points)],
            effective_at=timezone.now(),
            staff_user=staff_user,
            reason=reason[:200],
        )
    member.points_available = locked.points_available
    return rows


def update_member_by_staff(*, member: Member, fields: list[str], now=None) -> Member:
    """Save the `fields` staff changed on `member` (the admin form's: names, contact, status,
    consent, referrer), and only those: balances and tier moved meanwhile by purchases or
    jobs are kept. A change of marketing consent records when it changed."""
    fields = [*fields]
    if "marketing_consent" in fields:
        member.marketing_consent_at = now or timezone.now()
        fields.append("marketing_consent_at")
    if fields:
        with transaction.atomic():
            member.save(update_fields=[*fields, "updated_at"])
    return member
