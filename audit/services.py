import json
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction
from django.utils import timezone

from .models import AuditEvent


class AuditOutsideTransaction(RuntimeError):
    """Raised when a write service forgets to record inside its transaction."""


def _actor_fields(actor: Any) -> dict:
    if actor is None:
        return {"actor_kind": AuditEvent.ActorKind.SYSTEM, "actor_label": "system"}
    if isinstance(actor, str):
        return {"actor_kind": AuditEvent.ActorKind.SYSTEM, "actor_label": actor}
    label = actor._meta.label
    if label == settings.AUTH_USER_MODEL:
        return {
            "actor_kind": AuditEvent.ActorKind.USER,
            "actor_label": actor.get_username(),
            "actor_user": actor,
        }
    return {
        "actor_kind": AuditEvent.ActorKind.AGENT,
        "actor_label": str(getattr(actor, "slug", actor)),
    }


def _jsonable(data: dict) -> dict:
    return json.loads(json.dumps(data, cls=DjangoJSONEncoder))


def audit_record(
    *,
    event: str,
    actor: Any = None,
    target: models.Model | None = None,
    data: dict | None = None,
) -> AuditEvent:
    """Append one audit event. Callers must already be inside their write's transaction.

    `actor` is a user, an agent, a system label (a string) or None for the system.
    """
    if not transaction.get_connection().in_atomic_block:
        raise AuditOutsideTransaction(
            f"audit_record({event!r}) must run inside the transaction of the change it records"
        )
    return AuditEvent.objects.create(
        created_at=timezone.now(),
        event=event,
        target_type=target._meta.label_lower if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        data=_jsonable(data or {}),
        **_actor_fields(actor),
    )
