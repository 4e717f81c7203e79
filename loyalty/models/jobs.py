"""Job runs and idempotency records."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .program import StoreAPIKey


def lease_expired(now=None) -> Q:
    """Runs still marked running whose worker has not renewed the lease in time."""
    return Q(status=JobRun.Status.RUNNING, lease_expires_at__lt=now or timezone.now())


class JobRunQuerySet(models.QuerySet):
    def expired(self, now=None):
        return self.filter(lease_expired(now))


class JobRun(models.Model):
    """One run of a scheduled job: when it ran, what it did, and any error. Shown to staff.

    A running run holds a lease that its worker renews (loyalty/jobs.py); a run whose lease
    expired is abandoned: its worker died, and the summary says what it had done by then.
    """

    class Status(models.TextChoices):
        RUNNING = "running", _("Running")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")
        ABANDONED = "abandoned", _("Abandoned")

    name = models.CharField(_("job"), max_length=80)
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.RUNNING
    )
    started_at = models.DateTimeField(_("started"))
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    is_dry_run = models.BooleanField(_("dry run"), default=False)
    summary = models.JSONField(_("summary"), default=dict, blank=True)
    error = models.TextField(_("error"), blank=True)
    triggered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        verbose_name=_("triggered by"),
    )
    heartbeat_at = models.DateTimeField(_("last heartbeat"), null=True, blank=True)
    # Without a lease (rows not written by loyalty.jobs) a running row is never abandoned.
    lease_expires_at = models.DateTimeField(_("lease expires"), null=True, blank=True)
    worker_host = models.CharField(_("worker host"), max_length=255, blank=True)
    worker_pid = models.PositiveIntegerField(_("worker process id"), null=True, blank=True)

    objects = JobRunQuerySet.as_manager()

    class Meta:
        verbose_name = _("job run")
        verbose_name_plural = _("job runs")
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["name", "-started_at"], name="jobrun_name_started"),
            # The sweep of expired leases reads the few running rows only.
            models.Index(
                fields=["lease_expires_at"], condition=Q(status="running"), name="jobrun_lease"
            ),
        ]

    def __str__(self):
        return f"{self.name} @ {self.started_at:%Y-%m-%d %H:%M}"

    @property
    def is_lease_expired(self) -> bool:
        """Still marked running, but its worker stopped renewing the lease."""
        return (
            self.status == self.Status.RUNNING
            and self.lease_expires_at is not None
            and self.lease_expires_at < timezone.now()
        )

    @property
    def shown_status(self) -> str:
        """The status as staff should read it: abandoned once the lease has expired, even
        before a sweep has written it."""
        return self.Status.ABANDONED if self.is_lease_expired else self.status


class IdempotencyRecord(models.Model):
    """The first answer to a POST made with an Idempotency-Key, kept to answer retries.

    Claimed in the same transaction as the writes it protects: if they roll back, so does it.
    """

    api_key = models.ForeignKey(StoreAPIKey, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField()
    response_body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("idempotency record")
        verbose_name_plural = _("idempotency records")
        constraints = [
            models.UniqueConstraint(fields=["api_key", "key"], name="idempotency_key_unique"),
        ]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created")]

    def __str__(self):
        return f"{self.key} ({self.method} {self.path})"


# Campaigns and segments -----------------------------------------------------------------------
