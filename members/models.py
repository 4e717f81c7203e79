"""Members, their purchases and returns, and the append-only points ledger."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from loyalty.models import Program, Store, Tier


class Member(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        SUSPENDED = "suspended", _("Suspended")
        CLOSED = "closed", _("Closed")

    # Where a member enrolled: any sales channel, or the portal, staff or an import.
    ENROLMENT_CHANNELS = [
        *Store.Channel.choices,
        ("portal", _("Member portal")),
        ("admin", _("Staff")),
        ("import", _("Import")),
    ]

    program = models.ForeignKey(
        Program,
        on_delete=models.PROTECT,
        related_name="members",
        verbose_name=_("program"),
        db_index=False,  # covered by a composite index below
    )
    card_number = models.CharField(
        _("card number"),
        max_length=16,
        unique=True,
        editable=False,
        help_text=_("13 digits, the last one a Luhn check digit."),
    )
    email = models.EmailField(_("email"), blank=True)
    phone = models.CharField(_("phone"), max_length=20, blank=True)
    first_name = models.CharField(_("first name"), max_length=80, blank=True)
    last_name = models.CharField(_("last name"), max_length=80, blank=True)
    birth_date = models.DateField(_("birth date"), null=True, blank=True)
    preferred_language = models.CharField(
        _("preferred language"), max_length=8, choices=settings.LANGUAGES, default="fr"
    )
    marketing_consent = models.BooleanField(_("marketing consent"), default=False)
    marketing_consent_at = models.DateTimeField(_("consent changed at"), null=True, blank=True)
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.ACTIVE
    )
    enrolled_at = models.DateTimeField(_("enrolled at"))
    enrolment_channel = models.CharField(
        _("enrolment channel"), max_length=12, choices=ENROLMENT_CHANNELS
    )
    enrolment_store = models.ForeignKey(
        Store,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("enrolment store"),
    )
    referral_code = models.CharField(_("referral code"), max_length=10, unique=True)
    referred_by = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="referrals",
        verbose_name=_("referred by"),
    )
    tier = models.ForeignKey(
        Tier,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="members",
        verbose_name=_("tier"),
    )
    tier_review_on = models.DateField(
        _("tier reviewed on"),
        null=True,
        blank=True,
        help_text=_("The tier is kept at least until this date, then requalified (grace)."),
    )
    tier_manual_until = models.DateField(
        _("tier set by hand until"),
        null=True,
        blank=True,
        help_text=_("A tier set by staff is kept until this date, whatever the metric says."),
    )
    # An upper bound of the member's qualifying spend or points in the current window: set
    # exactly by the nightly requalification, raised by every purchase since. A purchase
    # looks the exact value up only when this bound says it may cross the next threshold.
    qualifying_bound = models.DecimalField(
        _("qualifying value (upper bound)"),
        max_digits=14,
        decimal_places=2,
        default=0,
        editable=False,
    )
    # Cached balances: changed only by members/ledger.py, in the transaction that writes the
    # ledger rows, under a lock on this row. check_ledger proves they equal the ledger sums.
    points_available = models.IntegerField(_("available points"), default=0, editable=False)
    points_pending = models.IntegerField(_("pending points"), default=0, editable=False)
    points_lifetime = models.IntegerField(
        _("lifetime points"),
        default=0,
        editable=False,
        help_text=_("Points earned, net of returns; spending does not lower it."),
    )
    last_activity_at = models.DateTimeField(_("last activity"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("member")
        verbose_name_plural = _("members")
        ordering = ["-enrolled_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["program", "email"],
                condition=~Q(email=""),
                name="member_email_unique_per_program",
            ),
            models.UniqueConstraint(
                fields=["program", "phone"],
                condition=~Q(phone=""),
                name="member_phone_unique_per_program",
            ),
            models.CheckConstraint(
                condition=Q(points_pending__gte=0), name="member_pending_not_negative"
            ),
        ]
        indexes = [
            models.Index(fields=["program", "enrolled_at"], name="member_program_enrolled"),
            models.Index(fields=["program", "last_name"], name="member_program_last_name"),
            # The members in id order with their enrolment (PostgreSQL: INCLUDE): the full KPI
            # recompute merges its member activity pairs with their cohorts through it, an
            # index-only scan (several times faster than reading the table).
            models.Index(
                fields=["id"], include=["program", "enrolled_at"], name="member_cohort_kpi"
            ),
            models.Index(
                fields=["program", "last_activity_at"],
                condition=Q(points_available__gt=0),
                name="member_holding_points_activity",
            ),
        ]

    def __str__(self):
        name = f"{self.first_name} {self.last_name}".strip()
        return f"{name or self.email or self.phone or '-'} ({self.card_number})"

    @property
    def full_name(self):
        return f"{self.first_name} {self.last_name}".strip()


class Purchase(models.Model):
    """A purchase posted by a store, with or without a member (anonymous: the baseline)."""

    public_id = models.UUIDField(_("public id"), default=uuid.uuid4, unique=True, editable=False)
    program = models.ForeignKey(
        Program,
        on_delete=models.PROTECT,
        related_name="purchases",
        verbose_name=_("program"),
        db_index=False,  # covered by a composite index below
    )
    store = models.ForeignKey(
        Store,
        on_delete=models.PROTECT,
        related_name="purchases",
        verbose_name=_("store"),
        db_index=False,  # covered by a composite index below
    )
    member = models.ForeignKey(
        Member,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="purchases",
        verbose_name=_("member"),
        db_index=False,  # covered by a composite index below
    )
    receipt_id = models.CharField(_("receipt id"), max_length=64)
    total_amount = models.DecimalField(_("amount"), max_digits=12, decimal_places=2)
    currency = models.CharField(_("currency"), max_length=3)
    occurred_at = models.DateTimeField(_("occurred at"))
    recorded_at = models.DateTimeField(_("recorded at"), auto_now_add=True)
    points_earned = models.IntegerField(_("points earned"), default=0)
    returned_amount = models.DecimalField(
        _("returned amount"), max_digits=12, decimal_places=2, default=0
    )
    points_reversed = models.IntegerField(_("points reversed"), default=0)
    breakdown = models.JSONField(_("breakdown"), default=list, blank=True)
    release_at = models.DateTimeField(
        _("pending until"),
        null=True,
        blank=True,
        help_text=_("When the points earned leave the pending bucket."),
    )
    released_at = models.DateTimeField(_("released at"), null=True, blank=True)
    # What makes a replay recognisable: a hash of the canonical request and the first answer.
    request_hash = models.CharField(max_length=64, editable=False)
    # The first answer as sent (JSON text), so that a replay is identical byte for byte.
    response = models.TextField(editable=False)

    class Meta:
        verbose_name = _("purchase")
        verbose_name_plural = _("purchases")
        ordering = ["-occurred_at"]
        constraints = [
            models.UniqueConstraint(fields=["store", "receipt_id"], name="purchase_receipt_unique"),
            models.CheckConstraint(
                condition=Q(total_amount__gt=0), name="purchase_amount_positive"
            ),
            models.CheckConstraint(
                condition=Q(returned_amount__gte=0, returned_amount__lte=models.F("total_amount")),
                name="purchase_returned_within_amount",
            ),
        ]
        indexes = [
            # The KPI reads of a period (sales per store, active members, retention) find
            # everything they need in this index on PostgreSQL: index-only scans of the
            # period, where the table's rows (with the stored answer) are ten times wider.
            models.Index(
                fields=["program", "occurred_at"],
                include=["member", "store", "total_amount", "returned_amount"],
                name="purchase_program_occurred_kpi",
            ),
            # A member's purchases in time order (history, tier values); on PostgreSQL it also
            # holds what the full KPI recompute's member activity reads, which so walks it in
            # member order: no sort of the program's purchases (analytics.kpis).
            models.Index(
                fields=["member", "occurred_at"],
                include=["program", "store", "total_amount", "returned_amount"],
                name="purchase_member_occurred_kpi",
            ),
            # The purchases with points taken back by a return, a few in a hundred: the KPIs'
            # campaign costs read only those (analytics.kpis.reads.costs) without a scan of
            # the table.
            models.Index(
                fields=["program", "id"],
                include=["points_reversed", "points_earned"],
                condition=Q(points_reversed__gt=0),
                name="purchase_points_reversed",
            ),
            models.Index(
                fields=["release_at"],
                condition=Q(released_at__isnull=True, member__isnull=False),
                name="purchase_unreleased",
            ),
        ]

    def __str__(self):
        return f"{self.receipt_id} ({self.total_amount} {self.currency})"


class PurchaseLine(models.Model):
    purchase = models.ForeignKey(
        Purchase, on_delete=models.CASCADE, related_name="lines", verbose_name=_("purchase")
    )
    line_no = models.PositiveSmallIntegerField(_("line"))
    sku = models.CharField(_("SKU"), max_length=60, blank=True)
    category = models.CharField(_("category"), max_length=60, blank=True)
    quantity = models.DecimalField(_("quantity"), max_digits=10, decimal_places=3)
    unit_price = models.DecimalField(_("unit price"), max_digits=12, decimal_places=2)
    line_amount = models.DecimalField(_("line amount"), max_digits=12, decimal_places=2)
    points_earned = models.IntegerField(_("points earned"), default=0)
    returned_quantity = models.DecimalField(
        _("returned quantity"), max_digits=10, decimal_places=3, default=0
    )

    class Meta:
        verbose_name = _("purchase line")
        verbose_name_plural = _("purchase lines")
        ordering = ["purchase", "line_no"]
        constraints = [
            models.UniqueConstraint(fields=["purchase", "line_no"], name="purchase_line_unique"),
            models.CheckConstraint(
                condition=Q(returned_quantity__gte=0, returned_quantity__lte=models.F("quantity")),
                name="purchase_line_returned_within_quantity",
            ),
        ]

    def __str__(self):
        return f"{self.line_no}: {self.sku or self.category} x {self.quantity}"


class PurchaseReturn(models.Model):
    """A full or partial return of a purchase; reverses the points earned on what came back."""

    public_id = models.UUIDField(_("public id"), default=uuid.uuid4, unique=True, editable=False)
    purchase = models.ForeignKey(
        Purchase, on_delete=models.PROTECT, related_name="returns", verbose_name=_("purchase")
    )
    store = models.ForeignKey(
        Store, on_delete=models.PROTECT, related_name="+", verbose_name=_("store")
    )
    return_id = models.CharField(_("return id"), max_length=64)
    return_amount = models.DecimalField(_("amount"), max_digits=12, decimal_places=2)
    occurred_at = models.DateTimeField(_("occurred at"))
    recorded_at = models.DateTimeField(_("recorded at"), auto_now_add=True)
    points_reversed = models.IntegerField(_("points reversed"), default=0)
    request_hash = models.CharField(max_length=64, editable=False)
    # The first answer as sent (JSON text), so that a replay is identical byte for byte.
    response = models.TextField(editable=False)

    class Meta:
        verbose_name = _("return")
        verbose_name_plural = _("returns")
        ordering = ["-occurred_at"]
        constraints = [
            models.UniqueConstraint(fields=["purchase", "return_id"], name="return_id_unique"),
            models.CheckConstraint(condition=Q(return_amount__gt=0), name="return_amount_positive"),
        ]

    def __str__(self):
        return f"{self.return_id} ({self.return_amount})"


class PointsEntry(models.Model):
    """One row of the append-only points ledger. Never updated or deleted.

    The rows of one business action share `txn`. A member's balance in a bucket is the sum of
    their rows in that bucket; Member caches those sums (see members/ledger.py).
    """

    class Kind(models.TextChoices):
        EARN = "earn", _("Earned")
        BONUS = "bonus", _("Bonus")
        RETURN = "return", _("Return")
        REDEEM = "redeem", _("Redeemed")
        REFUND = "refund", _("Refund")
        EXPIRE = "expire", _("Expired")
        ADJUST = "adjust", _("Adjustment")
        RELEASE = "release", _("Released")

    class Bucket(models.TextChoices):
        PENDING = "pending", _("Pending")
        AVAILABLE = "available", _("Available")

    txn = models.UUIDField(_("transaction"), db_index=True)
    program = models.ForeignKey(
        Program,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("program"),
        db_index=False,  # covered by a composite index below
    )
    member = models.ForeignKey(
        Member,
        on_delete=models.PROTECT,
        related_name="ledger",
        verbose_name=_("member"),
        db_index=False,  # covered by a composite index below
    )
    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices)
    bucket = models.CharField(_("bucket"), max_length=10, choices=Bucket.choices)
    points = models.IntegerField(_("points"))
    created_at = models.DateTimeField(_("recorded at"), auto_now_add=True)
    effective_at = models.DateTimeField(_("effective at"))
    # For a credit whose points were earned before it was written (a release of pending points:
    # the purchase's date), when they were earned. Expiry counts N months from it; empty means
    # `effective_at`.
    earned_at = models.DateTimeField(_("earned at"), null=True, blank=True)
    purchase = models.ForeignKey(
        Purchase,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="ledger",
        verbose_name=_("purchase"),
    )
    purchase_return = models.ForeignKey(
        PurchaseReturn,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="ledger",
        verbose_name=_("return"),
    )
    store = models.ForeignKey(
        Store,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("store"),
    )
    staff_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("staff user"),
    )
    reason = models.CharField(_("reason"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("points entry")
        verbose_name_plural = _("points ledger")
        ordering = ["-effective_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=~Q(points=0), name="points_entry_not_zero"),
            models.CheckConstraint(
                condition=~Q(kind="adjust") | ~Q(reason=""), name="points_entry_adjust_has_reason"
            ),
        ]
        indexes = [
            # A member's history, newest first; it also holds what the KPIs' liability reads of
            # the members who spent points (analytics.kpis), index-only.
            models.Index(
                fields=["member", "-effective_at", "-id"],
                include=["program", "kind", "points"],
                name="entry_member_history_kpi",
            ),
            models.Index(fields=["program", "effective_at"], name="entry_program_effective"),
            # The members who spent, lost, gave back or moved points, whose rows the KPIs'
            # liability orders (analytics.kpis.reads.liability): a few in a hundred rows,
            # found without a scan of the ledger.
            models.Index(
                fields=["program", "member"],
                condition=Q(points__lt=0) | Q(kind="release"),
                name="entry_consumers",
            ),
        ]

    def __str__(self):
        return f"{self.kind} {self.points:+d} ({self.bucket})"


class TierChange(models.Model):
    """Every change of a member's tier: from, to, why and when."""

    class Reason(models.TextChoices):
        PURCHASE = "purchase", _("Upgrade on a purchase")
        REQUALIFICATION = "requalification", _("Nightly requalification")
        DOWNGRADE = "downgrade", _("Downgrade after the grace period")
        MANUAL = "manual", _("Set by staff")
        MANUAL_ENDED = "manual_ended", _("Tier set by staff ended")

    program = models.ForeignKey(
        Program, on_delete=models.PROTECT, related_name="+", verbose_name=_("program")
    )
    member = models.ForeignKey(
        Member,
        on_delete=models.PROTECT,
        related_name="tier_changes",
        verbose_name=_("member"),
        db_index=False,  # covered by a composite index below
    )
    from_tier = models.ForeignKey(
        Tier,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("from"),
    )
    to_tier = models.ForeignKey(
        Tier,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("to"),
    )
    reason = models.CharField(_("why"), max_length=16, choices=Reason.choices)
    note = models.CharField(_("note"), max_length=200, blank=True)
    qualifying_value = models.DecimalField(
        _("qualifying value"), max_digits=14, decimal_places=2, null=True, blank=True
    )
    purchase = models.ForeignKey(
        Purchase,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("purchase"),
    )
    staff_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("staff user"),
    )
    created_at = models.DateTimeField(_("when"))

    class Meta:
        verbose_name = _("tier change")
        verbose_name_plural = _("tier changes")
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["member", "-created_at"], name="tierchange_member_created"),
            models.Index(fields=["program", "created_at"], name="tierchange_program_created"),
        ]

    def __str__(self):
        return f"{self.from_tier or '-'} -> {self.to_tier or '-'} ({self.get_reason_display()})"


class MemberNotification(models.Model):
    """An email to a member, claimed before it is sent, so that it goes out once.

    Unique per (member, kind, key): the nightly job can run any number of times.
    """

    class Kind(models.TextChoices):
        POINTS_EXPIRING = "points_expiring", _("Points expiring soon")
        TIER_CHANGED = "tier_changed", _("Tier changed")

    member = models.ForeignKey(
        Member,
        on_delete=models.CASCADE,
        related_name="notifications",
        verbose_name=_("member"),
        db_index=False,  # covered by the unique constraint
    )
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    key = models.CharField(_("key"), max_length=40)
    context = models.JSONField(_("content"), default=dict, blank=True)
    created_at = models.DateTimeField(_("claimed at"))
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    error = models.TextField(_("last error"), blank=True)

    class Meta:
        verbose_name = _("member notification")
        verbose_name_plural = _("member notifications")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["member", "kind", "key"], name="notification_once_per_key"
            ),
        ]
        indexes = [
            models.Index(
                fields=["created_at"], condition=Q(sent_at__isnull=True), name="notification_unsent"
            ),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} {self.key}"


class CampaignAward(models.Model):
    """A campaign reaching a member: the bonus given (its ledger rows share `txn`), or nothing
    for a member of the hold-out group. One per (campaign, purchase) for purchase campaigns and
    per (campaign, member, occasion) for lifecycle bonuses, so no bonus is given twice. The
    uplift of a campaign compares its treated and held-out members
    (members/campaigns/reports.py)."""

    program = models.ForeignKey(
        Program, on_delete=models.PROTECT, related_name="+", verbose_name=_("program")
    )
    campaign = models.ForeignKey(
        "loyalty.Campaign",
        on_delete=models.PROTECT,
        related_name="awards",
        verbose_name=_("campaign"),
        db_index=False,  # covered by the composite index below
    )
    member = models.ForeignKey(
        Member, on_delete=models.PROTECT, related_name="campaign_awards", verbose_name=_("member")
    )
    purchase = models.ForeignKey(
        Purchase,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="campaign_awards",
        verbose_name=_("purchase"),
    )
    store = models.ForeignKey(
        Store,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("store"),
    )
    occasion = models.CharField(
        _("occasion"),
        max_length=40,
        blank=True,
        help_text=_("What a lifecycle bonus was for (e.g. birthday:2026); empty on purchases."),
    )
    points = models.IntegerField(_("points"), default=0)
    is_held_out = models.BooleanField(_("held out"), default=False)
    occurred_at = models.DateTimeField(_("occurred at"))
    txn = models.UUIDField(_("ledger transaction"), null=True, blank=True)

    class Meta:
        verbose_name = _("campaign award")
        verbose_name_plural = _("campaign awards")
        ordering = ["-occurred_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "purchase"],
                condition=Q(purchase__isnull=False),
                name="campaign_award_once_per_purchase",
            ),
            models.UniqueConstraint(
                fields=["campaign", "member", "occasion"],
                condition=~Q(occasion=""),
                name="campaign_award_once_per_occasion",
            ),
            models.CheckConstraint(
                condition=Q(points__gte=0) & (Q(is_held_out=False) | Q(points=0)),
                name="campaign_award_held_out_get_nothing",
            ),
        ]
        indexes = [
            models.Index(fields=["campaign", "occurred_at"], name="campaign_award_occurred"),
            models.Index(fields=["program", "occurred_at"], name="campaign_award_program"),
        ]

    def __str__(self):
        return f"{self.campaign_id} -> {self.member_id}: {self.points}"


class SegmentMembership(models.Model):
    """A member in a segment, as of the segment's last refresh (members/campaigns/segments.py)."""

    segment = models.ForeignKey(
        "loyalty.Segment",
        on_delete=models.CASCADE,
        related_name="memberships",
        verbose_name=_("segment"),
        db_index=False,  # covered by the unique constraint
    )
    member = models.ForeignKey(
        Member, on_delete=models.CASCADE, related_name="segments", verbose_name=_("member")
    )

    class Meta:
        verbose_name = _("segment membership")
        verbose_name_plural = _("segment memberships")
        constraints = [
            models.UniqueConstraint(fields=["segment", "member"], name="segment_member_unique"),
        ]

    def __str__(self):
        return f"{self.segment_id}: {self.member_id}"
