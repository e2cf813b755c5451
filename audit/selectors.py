from django.db.models import Model, QuerySet

from .models import AuditCheckpoint, AuditEvent, AuditVerification


def audit_events_for(*, target: Model) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.filter(
        target_type=target._meta.label_lower, target_id=str(target.pk)
    ).order_by("id")


def chain_head() -> AuditEvent | None:
    return AuditEvent.objects.filter(seq__isnull=False).order_by("-seq").first()


def unsealed_count() -> int:
    return AuditEvent.objects.filter(seq__isnull=True).count()


def last_verification() -> AuditVerification | None:
    return AuditVerification.objects.order_by("-ran_at").first()


def newest_checkpoint() -> AuditCheckpoint | None:
    return AuditCheckpoint.objects.order_by("-last_seq").first()


def covering_checkpoint_record(*, seq: int | None) -> dict | None:
    """The signed checkpoint (as witnesses hold it) whose range ends at or after seq."""
    from . import chainhash

    if seq is None:
        return None
    checkpoint = AuditCheckpoint.objects.filter(last_seq__gte=seq).order_by("last_seq").first()
    return chainhash.checkpoint_record(checkpoint.as_document()) if checkpoint else None
