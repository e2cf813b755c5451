from django.db.models import Model, QuerySet

from .models import AuditEvent


def audit_events_for(*, target: Model) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.filter(
        target_type=target._meta.label_lower, target_id=str(target.pk)
    ).order_by("id")
