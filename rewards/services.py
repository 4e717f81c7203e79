"""Redeeming rewards, cancelling and consuming vouchers.

Every action runs in one transaction. Points move only through members/ledger.py under the
member's lock, which also serialises the member's redemptions, so the balance and the
per-member limit hold under races. Stock is taken with a conditional UPDATE (never below 0).
Lock order, wherever several rows are locked: member, then redemption.
"""

import secrets
import uuid
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone
from django.utils.translation import gettext

from loyalty.models import Program, Store
from members import errors as member_errors
from members import ledger
from members.ledger import Bucket, Kind, Posting
from members.models import Member

from . import errors
from .models import Redemption, Reward

# No 0/O, 1/I/L: a code read aloud or typed at a till cannot be mistaken. 12 characters of a
# 31-letter alphabet: about 59 bits, drawn by `secrets`.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 12


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalize_code(code: str) -> str:
    return "".join(ch for ch in (code or "").upper() if ch.isalnum())


def format_code(code: str) -> str:
    return "-".join(code[i : i + 4] for i in range(0, len(code), 4))


def period_start(program: Program, period: str, now: datetime) -> datetime | None:
    """The start of the current limit period in the program's time zone (None: lifetime)."""
    local = timezone.localtime(now, program.tzinfo)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == Reward.LimitPeriod.DAY:
        return day
    if period == Reward.LimitPeriod.WEEK:
        return day - timedelta(days=day.weekday())
    if period == Reward.LimitPeriod.MONTH:
        return day.replace(day=1)
    if period == Reward.LimitPeriod.YEAR:
        return day.replace(month=1, day=1)
    return None


def availability_error(reward: Reward, member: Member, now: datetime, *, tier_ids=None):
    """Why the member cannot redeem the reward now, ignoring balance, stock and limits (what a
    catalogue shows as locked), or None. `tier_ids`: the reward's allowed tiers, if known."""
    if reward.program_id != member.program_id:
        return errors.RewardNotFound()
    if not reward.is_active:
        return errors.RewardNotAvailable()
    if reward.valid_from and now < reward.valid_from:
        return errors.RewardNotAvailable(gettext("This reward is not available yet."))
    if reward.valid_until and now >= reward.valid_until:
        return errors.RewardNotAvailable(gettext("This reward is no longer available."))
    if tier_ids is None:
        tier_ids = {t.pk for t in reward.tiers.all()}
    if tier_ids and member.tier_id not in tier_ids:
        return errors.TierNotAllowed()
    return None


def redeem(
    *,
    member: Member,
    reward: Reward,
    channel: str,
    store: Store | None = None,
    staff_user=None,
    now: datetime | None = None,
) -> Redemption:
    """Redeem `reward` for `member`: debit the points, take one from the stock, count it in the
    member's limit and issue a voucher, all in one transaction. Nothing is written on error."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = ledger.lock_member(Member.objects.filter(pk=member.pk))
        # Read the reward afresh inside the transaction: staff may have just changed its cost,
        # dates or stock limit.
        reward = Reward.objects.prefetch_related("tiers").get(pk=reward.pk)
        if locked.status != Member.Status.ACTIVE:
            raise member_errors.MemberNotActive(field="card_number")
        problem = availability_error(reward, locked, now)
        if problem:
            raise problem
        if locked.points_available < reward.points_cost:
            raise errors.NotEnoughPoints(
                gettext("%(needed)d points needed, %(available)d available.")
                % {"needed": reward.points_cost, "available": locked.points_available}
            )
        if reward.limit_per_member:
            since = period_start(locked.program, reward.limit_period, now)
            taken = Redemption.objects.filter(member=locked, reward=reward).exclude(
                status=Redemption.Status.CANCELLED
            )
            if since is not None:
                taken = taken.filter(issued_at__gte=since)
            if taken.count() >= reward.limit_per_member:
                raise errors.LimitReached()
        # A conditional UPDATE: two members racing for the last one cannot both get it.
        if reward.stock is not None and not (
            Reward.objects.filter(pk=reward.pk, stock__gt=0).update(stock=F("stock") - 1)
        ):
            raise errors.OutOfStock()
        code = new_code()
        txn = uuid.uuid4()
        ledger.post(
            locked,
            [Posting(Kind.REDEEM, Bucket.AVAILABLE, -reward.points_cost)],
            effective_at=now,
            txn=txn,
            store=store,
            staff_user=staff_user,
            reason=f"voucher {format_code(code)}",
            is_activity=True,
        )
        redemption = Redemption.objects.create(
            program_id=locked.program_id,
            reward=reward,
            member=locked,
            code=code,
            channel=channel,
            points_spent=reward.points_cost,
            cost_amount=reward.cost_amount,
            issued_at=now,
            expires_at=now + timedelta(days=reward.voucher_valid_days),
            issued_store=store,
            issued_by=staff_user,
            debit_txn=txn,
        )
    member.points_available = locked.points_available
    return redemption


def cancel(*, redemption: Redemption, reason: str, staff_user=None, now=None) -> Redemption:
    """Cancel an unused voucher: refund its points and give its stock back."""
    reason = (reason or "").strip()
    now = now or timezone.now()
    if not reason:
        raise errors.CannotCancel(field="reason")
    with transaction.atomic():
        member = ledger.lock_member(Member.objects.filter(pk=redemption.member_id))
        locked = (
            Redemption.objects.select_for_update(of=("self",))
            .select_related("reward")
            .get(pk=redemption.pk)
        )
        if locked.status != Redemption.Status.ISSUED:
            raise errors.CannotCancel(
                gettext("This voucher is %(status)s.")
                % {"status": locked.get_status_display().lower()}
            )
        if locked.expires_at <= now:
            # Expired, even if the nightly job has not marked it yet (as `use_voucher` sees it).
            raise errors.CannotCancel(errors.VoucherExpired.title)
        txn = uuid.uuid4()
        ledger.post(
            member,
            [Posting(Kind.REFUND, Bucket.AVAILABLE, locked.points_spent)],
            effective_at=now,
            txn=txn,
            staff_user=staff_user,
            reason=f"voucher {format_code(locked.code)} cancelled: {reason}"[:200],
        )
        if locked.reward.stock is not None:
            Reward.objects.filter(pk=locked.reward_id).update(stock=F("stock") + 1)
        Redemption.objects.filter(pk=locked.pk).update(
            status=Redemption.Status.CANCELLED,
            closed_at=now,
            refund_txn=txn,
            cancelled_by=staff_user,
            cancel_reason=reason[:200],
        )
    redemption.refresh_from_db()
    return redemption


def save_reward(*, reward: Reward, shown_stock: int | None = None) -> Reward:
    """Save a reward edited by staff. A new reward is saved as it is. A saved reward keeps the
    stock that redemptions and cancellations moved while it was being edited: its stock
    changes only when `reward.stock` differs from `shown_stock` (what the editor started
    from), and then by the difference, applied to the stock as it is at the commit in one
    conditional UPDATE (never below 0), or set outright when it switches between limited
    and unlimited. `reward.stock` is the stock after the save."""
    with transaction.atomic():
        if reward.pk is None:
            reward.save()
            return reward
        fields = [
            f.name
            for f in reward._meta.concrete_fields
            if not f.primary_key and f.name not in ("stock", "created_at")
        ]
        reward.save(update_fields=fields)
        wanted = reward.stock
        if wanted != shown_stock:
            rows = Reward.objects.filter(pk=reward.pk)
            # The UPDATE takes the row lock that a redemption's `stock = stock - 1` also
            # takes, and PostgreSQL re-reads `stock` after waiting for it: no move is lost.
            moved = (
                wanted is not None
                and shown_stock is not None
                and rows.filter(stock__isnull=False).update(
                    stock=Greatest(F("stock") + (wanted - shown_stock), 0)
                )
            )
            if not moved:
                rows.update(stock=wanted)
        reward.refresh_from_db(fields=["stock"])
    return reward


def find_voucher(program: Program, code: str, *, lock: bool = False) -> Redemption:
    """The program's voucher with this code (typed in any case, with dashes or spaces), with
    what its answer shows; locked (only its row) when `lock`. VoucherNotFound otherwise.

    Locked, the store that used it is not joined: after waiting for another till's lock,
    PostgreSQL hands back the voucher's new row but the joined store of the row as it was
    before the wait (none). The caller that uses a locked voucher's store loads it itself.
    """
    if lock:
        vouchers = Redemption.objects.select_related("reward", "member").select_for_update(
            of=("self",)
        )
    else:
        vouchers = Redemption.objects.select_related("reward", "member", "used_store")
    voucher = vouchers.filter(program=program, code=normalize_code(code)).first()
    if voucher is None:
        raise errors.VoucherNotFound()
    return voucher


def use_voucher(
    *, program: Program, code: str, store: Store, receipt_id: str, now=None
) -> tuple[Redemption, bool]:
    """Use a voucher at the till, exactly once. The same store and receipt again is a replay
    (created=False); another receipt is VoucherAlreadyUsed."""
    now = now or timezone.now()
    if not receipt_id:
        raise errors.ReceiptRequired()
    with transaction.atomic():
        voucher = find_voucher(program, code, lock=True)
        if voucher.status == Redemption.Status.USED:
            if voucher.used_receipt_id == receipt_id and voucher.used_store_id == store.pk:
                voucher.used_store = store
                return voucher, False
            raise errors.VoucherAlreadyUsed()
        if voucher.status == Redemption.Status.CANCELLED:
            raise errors.VoucherCancelled()
        if voucher.status == Redemption.Status.EXPIRED or voucher.expires_at <= now:
            raise errors.VoucherExpired()
        Redemption.objects.filter(pk=voucher.pk).update(
            status=Redemption.Status.USED, used_at=now, used_store=store, used_receipt_id=receipt_id
        )
        voucher.status = Redemption.Status.USED
        voucher.used_at = now
        voucher.used_store = store
        voucher.used_receipt_id = receipt_id
    return voucher, True
