from django.conf import settings
from django.db import models


class AuditEvent(models.Model):
    """One append-only record of a state change.

    The hash chain (prev_hash, hash) is filled in by the sealing logic of the
    audit-trail issue; until then both stay empty.
    """

    class ActorKind(models.TextChoices):
        USER = "user", "User"
        AGENT = "agent", "Agent"
        SYSTEM = "system", "System"

    created_at = models.DateTimeField(db_index=True)
    event = models.CharField(max_length=100, db_index=True)
    actor_kind = models.CharField(max_length=10, choices=ActorKind.choices)
    actor_label = models.CharField(max_length=200, blank=True)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_constraint=False,
    )
    target_type = models.CharField(max_length=100, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    data = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64, blank=True)
    hash = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["target_type", "target_id", "id"])]
        permissions = [("export_auditevent", "Can export audit trails")]

    def __str__(self):
        return f"#{self.pk} {self.event} by {self.actor_label or self.actor_kind}"
