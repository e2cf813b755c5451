from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from audit.services import audit_record

from . import keys
from .models import Agent, AgentKey


@dataclass(frozen=True)
class IssuedKey:
    key: AgentKey
    secret: str  # the only time the full key exists outside the agent's hands


def agent_key_issue(
    *, agent: Agent, issued_by=None, expires_in_days: int | None = 90, label: str = ""
) -> IssuedKey:
    secret = keys.generate_key()
    now = timezone.now()
    with transaction.atomic():
        key = AgentKey.objects.create(
            agent=agent,
            prefix=keys.display_prefix(secret),
            key_hash=keys.hash_key(secret),
            label=label,
            created_at=now,
            created_by=issued_by if getattr(issued_by, "pk", None) else None,
            expires_at=now + timedelta(days=expires_in_days) if expires_in_days else None,
        )
        audit_record(
            event="agent_key.issued",
            actor=issued_by,
            target=agent,
            data={
                "key_id": key.pk,
                "prefix": key.prefix,
                "expires_at": key.expires_at,
                "label": label,
            },
        )
    return IssuedKey(key=key, secret=secret)
