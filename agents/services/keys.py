from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings as django_settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit.services import audit_record

from .. import keys
from ..models import Agent, AgentKey, Alert
from ._common import AgentsRefusal, _user_or_none
from .alerts import alert_raise


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
            created_by=_user_or_none(issued_by),
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


def agent_key_rotate(
    *,
    key: AgentKey,
    actor: Any = None,
    overlap_hours: int | None = None,
    expires_in_days: int | None = 90,
) -> IssuedKey:
    """Issue a new key; the old one keeps working for the overlap window, then stops."""
    overlap = timedelta(
        hours=overlap_hours
        if overlap_hours is not None
        else django_settings.AISPM_KEY_ROTATION_OVERLAP_HOURS
    )
    with transaction.atomic():
        old = AgentKey.objects.select_for_update().get(pk=key.pk)
        if old.state_at(timezone.now()) == AgentKey.State.REVOKED:
            raise AgentsRefusal("This key is already revoked; issue a new one instead.")
        issued = agent_key_issue(
            agent=old.agent, issued_by=actor, expires_in_days=expires_in_days, label=old.label
        )
        stops = timezone.now() + overlap
        if old.revoked_at is None or old.revoked_at > stops:
            old.revoked_at = stops
            old.save(update_fields=["revoked_at"])
        audit_record(
            event="agent_key.rotated",
            actor=actor,
            target=old.agent,
            data={"old_key_id": old.pk, "new_key_id": issued.key.pk, "old_key_stops_at": stops},
        )
    return issued


def agent_key_revoke(*, key: AgentKey, actor: Any = None, reason: str = "") -> AgentKey:
    """Revoke a key at once."""
    with transaction.atomic():
        key = AgentKey.objects.select_for_update().get(pk=key.pk)
        now = timezone.now()
        if key.state_at(now) == AgentKey.State.REVOKED:
            return key
        key.revoked_at = now
        key.save(update_fields=["revoked_at"])
        audit_record(
            event="agent_key.revoked",
            actor=actor,
            target=key.agent,
            data={"key_id": key.pk, "prefix": key.prefix, "reason": reason},
        )
    return key


def key_age_alerts(*, now=None) -> list[Alert]:
    """Alert on keys that expire soon or are older than the maximum age (once per key)."""
    now = now or timezone.now()
    soon = now + timedelta(days=django_settings.AISPM_KEY_EXPIRY_WARNING_DAYS)
    too_old = now - timedelta(days=django_settings.AISPM_KEY_MAX_AGE_DAYS)
    live = (
        AgentKey.objects.filter(Q(revoked_at__isnull=True) | Q(revoked_at__gt=now))
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .select_related("agent")
    )
    raised = []
    for key in live.filter(Q(expires_at__lte=soon) | Q(created_at__lte=too_old)):
        kind = "key_expiring" if key.expires_at and key.expires_at <= soon else "key_too_old"
        subject = f"key:{key.pk}:{kind}"
        if Alert.objects.filter(subject=subject).exists():
            continue
        message = (
            f"Key {key.prefix}… of {key.agent.slug} expires {key.expires_at:%Y-%m-%d}; rotate it."
            if kind == "key_expiring"
            else f"Key {key.prefix}… of {key.agent.slug} is older than "
            f"{django_settings.AISPM_KEY_MAX_AGE_DAYS} days; rotate it."
        )
        raised.append(
            alert_raise(
                severity="medium",
                kind=kind,
                agent=key.agent,
                subject=subject,
                message=message,
                evidence={"key_id": key.pk, "prefix": key.prefix},
            )
        )
    return raised
