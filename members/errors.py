"""Domain exceptions of members, purchases and the ledger."""

from django.utils.translation import gettext_lazy as _

from loyalty.errors import Conflict, DomainError, NotFound


class UnknownCard(DomainError):
    code = "unknown_card"
    field = "card_number"
    title = _("No member of this program has this card number.")


class MemberNotFound(NotFound):
    code = "member_not_found"
    title = _("No member of this program matches.")


class MemberNotActive(DomainError):
    code = "member_not_active"
    field = "card_number"
    title = _("This member's account is suspended or closed.")


class WrongCurrency(DomainError):
    code = "wrong_currency"
    field = "currency"
    title = _("The currency is not the program's currency.")


class InvalidOccurredAt(DomainError):
    code = "invalid_occurred_at"
    field = "occurred_at"
    title = _("The purchase date is in the future or older than the back-dating window.")


class LinesMismatch(DomainError):
    code = "lines_mismatch"
    field = "lines"
    title = _("The lines do not add up to the amount.")


class ReceiptConflict(Conflict):
    code = "receipt_conflict"
    field = "receipt_id"
    title = _("This receipt id was already posted by this store with a different content.")


class UnknownReceipt(NotFound):
    code = "unknown_receipt"
    field = "receipt_id"
    title = _("No purchase with this receipt id in this program.")


class ReturnConflict(Conflict):
    code = "return_conflict"
    field = "return_id"
    title = _("This return id was already posted with a different content.")


class ReturnExceedsPurchase(DomainError):
    code = "return_exceeds_purchase"
    field = "amount"
    title = _("The total returned would exceed the purchase.")


class EnrolmentConflict(Conflict):
    code = "enrolment_conflict"
    field = "email"
    title = _("The email and the phone belong to two different members.")


class InvalidAdjustment(DomainError):
    code = "invalid_adjustment"
    field = "points"
    title = _("An adjustment needs a non-zero number of points and a reason.")


class UnknownReferralCode(DomainError):
    code = "unknown_referral_code"
    field = "referral_code"
    title = _("No member of this program has this referral code.")


class InvalidManualTier(DomainError):
    code = "invalid_manual_tier"
    field = "tier"
    title = _(
        "A tier set by hand must be one of the member's program, with an end date that is not "
        "in the past and a reason."
    )
