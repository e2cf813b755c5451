"""Reviewers' passkeys (WebAuthn credentials) and the signatures they put on approvals.

Imported by approvals.models, so Django registers them with the approvals app.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Passkey(models.Model):
    """A WebAuthn credential. Revoking one keeps its public key, so that the approvals it
    signed stay verifiable; a revoked passkey signs nothing new."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="passkeys"
    )
    # base64url without padding, as WebAuthn's JSON encodes it.
    credential_id = models.CharField(max_length=1400, unique=True)
    public_key = models.BinaryField()
    sign_count = models.PositiveBigIntegerField(default=0)
    name = models.CharField(max_length=100)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(
                fields=["user"], condition=Q(revoked_at__isnull=True), name="passkey_active"
            )
        ]

    def __str__(self):
        return f"{self.name} ({self.user})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class ReviewSignature(models.Model):
    """The WebAuthn assertion a reviewer gave for one approval, over its canonical statement."""

    review = models.OneToOneField(
        "approvals.Review", on_delete=models.CASCADE, related_name="signature"
    )
    passkey = models.ForeignKey(Passkey, on_delete=models.PROTECT, related_name="signatures")
    statement = models.JSONField()
    credential_id = models.CharField(max_length=1400)
    authenticator_data = models.TextField()
    client_data_json = models.TextField()
    signature = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self):
        return f"signature on review {self.review_id}"
