from django.conf import settings
from django.db import models


class AppendOnlyError(RuntimeError):
    """Audit events are never edited or deleted once written."""


class AuditEventQuerySet(models.QuerySet):
    def delete(self):
        raise AppendOnlyError("audit events cannot be deleted")

    def update(self, **kwargs):
        raise AppendOnlyError("audit events cannot be updated")


class AuditEvent(models.Model):
    """One append-only record of a state change, sealed into one SHA-256 chain.

    `audit_record` inserts it inside the transaction of the change; the sealer
    then gives it its place in the chain (`seq`), the previous event's hash and
    its own. A PostgreSQL trigger refuses any other UPDATE, and every DELETE
    and TRUNCATE; elsewhere the queryset and model refuse them.
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
        on_delete=models.DO_NOTHING,
        related_name="+",
        db_constraint=False,
    )
    target_type = models.CharField(max_length=100, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    data = models.JSONField(default=dict, blank=True)
    seq = models.BigIntegerField(null=True, blank=True, unique=True, editable=False)
    prev_hash = models.CharField(max_length=64, blank=True)
    hash = models.CharField(max_length=64, blank=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["target_type", "target_id", "id"]),
            models.Index(
                fields=["id"], condition=models.Q(seq__isnull=True), name="audit_unsealed"
            ),
        ]
        permissions = [("export_auditevent", "Can export audit trails")]

    def __str__(self):
        return f"#{self.pk} {self.event} by {self.actor_label or self.actor_kind}"

    def save(self, *args, **kwargs):
        if self.pk is not None and not self._state.adding:
            raise AppendOnlyError("audit events cannot be updated")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("audit events cannot be deleted")


class AuditVerification(models.Model):
    """The outcome of one run of the chain verification."""

    ran_at = models.DateTimeField()
    ok = models.BooleanField()
    events_checked = models.BigIntegerField()
    head_seq = models.BigIntegerField(null=True, blank=True)
    head_hash = models.CharField(max_length=64, blank=True)
    first_broken_id = models.BigIntegerField(null=True, blank=True)
    problem = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-ran_at"]

    def __str__(self):
        return f"{'intact' if self.ok else 'BROKEN'} at {self.ran_at:%Y-%m-%d %H:%M}"


class AuditCheckpoint(models.Model):
    """A signed statement of the chain's head: events first_seq..last_seq end in
    head_hash. Checkpoints chain to each other through prev_hash, and each is also
    written to a witness outside the database. Append-only, like the events."""

    created_at = models.DateTimeField()
    first_seq = models.BigIntegerField()
    last_seq = models.BigIntegerField(unique=True)
    head_hash = models.CharField(max_length=64)
    prev_hash = models.CharField(max_length=64)
    key_fingerprint = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)
    signature = models.CharField(max_length=100)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["last_seq"]

    def __str__(self):
        return f"checkpoint #{self.pk} (seq {self.first_seq}..{self.last_seq})"

    def save(self, *args, **kwargs):
        if self.pk is not None and not self._state.adding:
            raise AppendOnlyError("audit checkpoints cannot be updated")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("audit checkpoints cannot be deleted")

    def as_document(self) -> dict:
        return {
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "head_hash": self.head_hash,
            "prev_hash": self.prev_hash,
            "created_at": self.created_at,
            "key_fingerprint": self.key_fingerprint,
            "hash": self.hash,
            "signature": self.signature,
        }


class AuditArchive(models.Model):
    """A run of the chain moved out of the database into a verified segment file.

    Its row is what lets PostgreSQL's trigger delete events seq first_seq..last_seq;
    only the archiving role may insert one (see the README's roles). The chain then
    starts at last_seq + 1, whose prev_hash is head_hash."""

    created_at = models.DateTimeField()
    first_seq = models.BigIntegerField()
    last_seq = models.BigIntegerField(unique=True)
    events = models.BigIntegerField()
    head_hash = models.CharField(max_length=64)
    checkpoint_hash = models.CharField(max_length=64)
    segment_sha256 = models.CharField(max_length=64)
    location = models.TextField()

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["last_seq"]

    def __str__(self):
        return f"archive of seq {self.first_seq}..{self.last_seq}"

    def save(self, *args, **kwargs):
        if self.pk is not None and not self._state.adding:
            raise AppendOnlyError("audit archives cannot be updated")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("audit archives cannot be deleted")


class AuditSinkCursor(models.Model):
    """How far one SIEM sink has received the chain: every event up to last_seq."""

    sink = models.CharField(max_length=300, unique=True)
    last_seq = models.BigIntegerField(default=0)
    delivered_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["sink"]

    def __str__(self):
        return f"{self.sink} at seq {self.last_seq}"
