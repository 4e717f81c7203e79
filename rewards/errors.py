"""Domain exceptions of rewards and vouchers (same problem shape as the purchase API)."""

from django.utils.translation import gettext_lazy as _

from loyalty.errors import Conflict, DomainError, NotFound


class RewardNotFound(NotFound):
    code = "reward_not_found"
    field = "reward_id"
    title = _("No reward of this program has this id.")


class RewardNotAvailable(DomainError):
    code = "reward_not_available"
    field = "reward_id"
    title = _("This reward is not available now (inactive, not yet or no longer valid).")


class NotEnoughPoints(DomainError):
    code = "not_enough_points"
    field = "reward_id"
    title = _("The member does not have enough available points for this reward.")


class OutOfStock(DomainError):
    code = "out_of_stock"
    field = "reward_id"
    title = _("This reward is out of stock.")


class LimitReached(DomainError):
    code = "limit_reached"
    field = "reward_id"
    title = _("The member has reached this reward's limit.")


class TierNotAllowed(DomainError):
    code = "tier_not_allowed"
    field = "reward_id"
    title = _("This reward is reserved for other tiers.")


class VoucherNotFound(NotFound):
    code = "voucher_not_found"
    field = "code"
    title = _("No voucher of this program has this code.")


class VoucherExpired(DomainError):
    code = "voucher_expired"
    field = "code"
    title = _("This voucher has expired.")


class VoucherCancelled(DomainError):
    code = "voucher_cancelled"
    field = "code"
    title = _("This voucher was cancelled.")


class VoucherAlreadyUsed(Conflict):
    code = "voucher_already_used"
    field = "code"
    title = _("This voucher was already used on another receipt.")


class CannotCancel(DomainError):
    code = "cannot_cancel"
    field = "code"
    title = _("Only an unused voucher can be cancelled, with a reason.")


class ReceiptRequired(DomainError):
    code = "receipt_required"
    field = "receipt_id"
    title = _("Say which receipt the voucher is used on.")
