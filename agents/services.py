import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings as django_settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F, Max, Q
from django.utils import timezone

from audit.services import audit_record

from . import crypto, keys
from .models import (
    ActionType,
    Agent,
    AgentKey,
    Alert,
    BehaviourVersion,
    GlobalStop,
    Grant,
    Outcome,
    SeenAddress,
)
from .policy_rules import validate_constraint, validate_policy

log = logging.getLogger(__name__)


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


# Declarative writes: each one makes a row match a definition and records what changed.


@dataclass(frozen=True)
class Applied[T]:
    """What an ``*_apply`` service did: created the row, changed some fields, or nothing."""

    instance: T
    created: bool = False
    changed: tuple[str, ...] = ()

    @property
    def happened(self) -> bool:
        return self.created or bool(self.changed)


@dataclass(frozen=True)
class ActionTypeApplied(Applied[ActionType]):
    # Set only when this call generated a webhook secret; it is never stored in clear.
    generated_secret: str = ""


def _user_or_none(actor: Any):
    if actor is None or isinstance(actor, str):
        return None
    return actor if actor._meta.label == django_settings.AUTH_USER_MODEL else None


def _username(user) -> str | None:
    return user.get_username() if user is not None else None


def _same_secret(token: str, secret: str) -> bool:
    try:
        return hmac.compare_digest(crypto.decrypt_secret(token), secret)
    except crypto.SecretDecryptError:
        return False


def _bump_scope(**filters) -> None:
    Agent.objects.filter(**filters).update(scope_version=F("scope_version") + 1)


def action_type_apply(
    *,
    key: str,
    name: str,
    params_schema: dict,
    irreversible: bool,
    summary_template: str = "",
    risk: str = "",
    default_outcome: str = Outcome.REVIEW,
    connector_type: str = ActionType.Connector.NONE,
    connector_config: dict | None = None,
    connector_secret: str = "",
    actor: Any = None,
) -> ActionTypeApplied:
    """Create or update the action type `key` so that it matches this definition.

    `connector_secret` is a clear-text Standard Webhooks secret to store encrypted.
    A webhook connector that has neither it nor a `secret_env` keeps the secret it
    already stores, or gets a generated one, returned once in `generated_secret`.
    """
    if irreversible and default_outcome == Outcome.ALLOW:
        raise ValueError(f"{key}: allow is not permitted as the default of an irreversible action")
    connector_config = dict(connector_config or {})
    stores_secret = connector_type == ActionType.Connector.WEBHOOK and not connector_config.get(
        "secret_env"
    )
    if connector_secret and not stores_secret:
        raise ValueError(f"{key}: only a webhook connector without secret_env stores a secret")
    if connector_secret and not crypto.is_webhook_secret(connector_secret):
        raise ValueError(f"{key}: the connector secret must be a whsec_ Standard Webhooks secret")
    wanted = {
        "name": name,
        "summary_template": summary_template,
        "params_schema": params_schema,
        "irreversible": irreversible,
        "risk": risk,
        "default_outcome": default_outcome,
        "connector_type": connector_type,
        "connector_config": connector_config,
    }
    now = timezone.now()
    generated = ""
    with transaction.atomic():
        action_type = ActionType.objects.select_for_update().filter(key=key).first()
        if action_type is None:
            token = ""
            if stores_secret:
                if not connector_secret:
                    connector_secret = generated = crypto.generate_webhook_secret()
                token = crypto.encrypt_secret(connector_secret)
            action_type = ActionType.objects.create(
                key=key,
                connector_secret_encrypted=token,
                created_at=now,
                updated_at=now,
                **wanted,
            )
            audit_record(
                event="action_type.created",
                actor=actor,
                target=action_type,
                data={
                    "key": key,
                    **wanted,
                    "connector_secret": "generated" if generated else ("set" if token else ""),
                },
            )
            return ActionTypeApplied(instance=action_type, created=True, generated_secret=generated)

        changes = {
            field: {"from": getattr(action_type, field), "to": value}
            for field, value in wanted.items()
            if getattr(action_type, field) != value
        }
        token = action_type.connector_secret_encrypted
        if not stores_secret:
            token = ""
        elif connector_secret:
            if not token or not _same_secret(token, connector_secret):
                token = crypto.encrypt_secret(connector_secret)
        elif not token:
            generated = crypto.generate_webhook_secret()
            token = crypto.encrypt_secret(generated)
        changed = list(changes)
        if token != action_type.connector_secret_encrypted:
            changed.append("connector_secret")
        if not changed:
            return ActionTypeApplied(instance=action_type)
        for field, value in wanted.items():
            setattr(action_type, field, value)
        action_type.connector_secret_encrypted = token
        action_type.updated_at = now
        action_type.save()
        _bump_scope(grants__action_type=action_type)
        audit_record(
            event="action_type.updated",
            actor=actor,
            target=action_type,
            # The secret itself never enters the audit trail, only the fact it changed.
            data={"key": key, "changed": changed, "changes": changes},
        )
    return ActionTypeApplied(
        instance=action_type, changed=tuple(changed), generated_secret=generated
    )


def agent_apply(
    *, slug: str, name: str, owner=None, callback_url: str = "", actor: Any = None
) -> Applied[Agent]:
    """Create or update the agent `slug`. Its status, keys, grants and behaviour are
    left alone; those have their own services."""
    callback_url = callback_url or ""
    now = timezone.now()
    with transaction.atomic():
        agent = Agent.objects.select_for_update().filter(slug=slug).first()
        if agent is None:
            agent = Agent.objects.create(
                slug=slug,
                name=name,
                owner=owner,
                callback_url=callback_url,
                created_at=now,
                updated_at=now,
            )
            audit_record(
                event="agent.created",
                actor=actor,
                target=agent,
                data={
                    "slug": slug,
                    "name": name,
                    "owner": _username(owner),
                    "callback_url": callback_url,
                },
            )
            return Applied(instance=agent, created=True)

        changes = {}
        if agent.name != name:
            changes["name"] = {"from": agent.name, "to": name}
        if agent.owner_id != getattr(owner, "pk", None):
            changes["owner"] = {"from": _username(agent.owner), "to": _username(owner)}
        if agent.callback_url != callback_url:
            changes["callback_url"] = {"from": agent.callback_url, "to": callback_url}
        if not changes:
            return Applied(instance=agent)
        agent.name = name
        agent.owner = owner
        agent.callback_url = callback_url
        agent.updated_at = now
        agent.save(update_fields=["name", "owner", "callback_url", "updated_at"])
        audit_record(
            event="agent.updated",
            actor=actor,
            target=agent,
            data={"slug": slug, "changed": list(changes), "changes": changes},
        )
    return Applied(instance=agent, changed=tuple(changes))


def grant_apply(
    *,
    agent: Agent,
    action_type: ActionType,
    limit_per_hour: int | None = None,
    constraint: str = "",
    actor: Any = None,
) -> Applied[Grant]:
    """Grant `agent` the scope `action_type`, or update that grant's limit and constraint."""
    constraint = constraint or ""
    problems = validate_constraint(constraint)
    if problems:
        raise ValueError("; ".join(str(problem) for problem in problems))
    if limit_per_hour is not None and limit_per_hour < 1:
        raise ValueError("limit_per_hour must be at least 1, or None for no limit")
    now = timezone.now()
    scope = {"agent": agent.slug, "action": action_type.key}
    with transaction.atomic():
        grant = (
            Grant.objects.select_for_update().filter(agent=agent, action_type=action_type).first()
        )
        if grant is None:
            grant = Grant.objects.create(
                agent=agent,
                action_type=action_type,
                limit_per_hour=limit_per_hour,
                constraint=constraint,
                created_at=now,
                updated_at=now,
            )
            _bump_scope(pk=agent.pk)
            audit_record(
                event="grant.created",
                actor=actor,
                target=grant,
                data={**scope, "limit_per_hour": limit_per_hour, "constraint": constraint},
            )
            return Applied(instance=grant, created=True)

        changes = {
            field: {"from": getattr(grant, field), "to": value}
            for field, value in (("limit_per_hour", limit_per_hour), ("constraint", constraint))
            if getattr(grant, field) != value
        }
        if not changes:
            return Applied(instance=grant)
        grant.limit_per_hour = limit_per_hour
        grant.constraint = constraint
        grant.updated_at = now
        grant.save(update_fields=["limit_per_hour", "constraint", "updated_at"])
        _bump_scope(pk=agent.pk)
        audit_record(
            event="grant.updated",
            actor=actor,
            target=grant,
            data={**scope, "changed": list(changes), "changes": changes},
        )
    return Applied(instance=grant, changed=tuple(changes))


def grant_remove(*, grant: Grant, actor: Any = None) -> Grant:
    """Delete a grant. Release re-checks grants, so approved decisions in flight for
    this scope are blocked rather than released."""
    with transaction.atomic():
        audit_record(
            event="grant.removed",
            actor=actor,
            target=grant,
            data={
                "agent": grant.agent.slug,
                "action": grant.action_type.key,
                "limit_per_hour": grant.limit_per_hour,
                "constraint": grant.constraint,
            },
        )
        grant.delete()
        _bump_scope(pk=grant.agent_id)
    return grant


def behaviour_content_hash(*, instructions: str, settings: dict, policy: list) -> str:
    """SHA-256 of the canonical JSON of a behaviour's content; equal content, equal hash."""
    canonical = json.dumps(
        {"instructions": instructions, "settings": settings, "policy": policy},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def behaviour_version_create(
    *,
    agent: Agent,
    instructions: str = "",
    settings: dict | None = None,
    policy: list | None = None,
    note: str = "",
    actor: Any = None,
) -> BehaviourVersion:
    """Add the next behaviour version of `agent`. Versions are never edited, so even
    content equal to an older version makes a new one. Does not activate it."""
    settings = settings if settings is not None else {}
    policy = policy if policy is not None else []
    irreversible_actions = dict(ActionType.objects.values_list("key", "irreversible"))
    problems = validate_policy(policy, irreversible_actions=irreversible_actions)
    if problems:
        raise ValueError("; ".join(str(problem) for problem in problems))
    with transaction.atomic():
        # Locking the agent serialises version numbering for it.
        Agent.objects.select_for_update().filter(pk=agent.pk).first()
        latest = agent.behaviour_versions.aggregate(latest=Max("number"))["latest"] or 0
        version = BehaviourVersion.objects.create(
            agent=agent,
            number=latest + 1,
            instructions=instructions,
            settings=settings,
            policy=policy,
            content_hash=behaviour_content_hash(
                instructions=instructions, settings=settings, policy=policy
            ),
            note=note,
            created_by=_user_or_none(actor),
            created_at=timezone.now(),
        )
        audit_record(
            event="behaviour_version.created",
            actor=actor,
            target=version,
            data={
                "agent": agent.slug,
                "number": version.number,
                "content_hash": version.content_hash,
                "note": note,
            },
        )
    return version


def behaviour_version_activate(
    *, version: BehaviourVersion, actor: Any = None, reason: str = ""
) -> Agent:
    """Make `version` its agent's active behaviour; a no-op if it already is. Also the
    rollback path: activating an older version needs no new one, and no version is
    ever deleted, so the history shows the rollback."""
    with transaction.atomic():
        agent = Agent.objects.select_for_update().get(pk=version.agent_id)
        if agent.active_behaviour_id == version.pk:
            return agent
        previous = agent.active_behaviour.number if agent.active_behaviour else None
        rollback = previous is not None and version.number < previous
        now = timezone.now()
        agent.active_behaviour = version
        agent.behaviour_activated_at = now
        agent.updated_at = now
        agent.save(update_fields=["active_behaviour", "behaviour_activated_at", "updated_at"])
        audit_record(
            event="behaviour_version.rolled_back" if rollback else "behaviour_version.activated",
            actor=actor,
            target=version,
            data={
                "agent": agent.slug,
                "number": version.number,
                "previous": previous,
                "reason": reason,
            },
        )
    return agent


def agent_callback_secret_ensure(*, agent: Agent, actor: Any = None) -> str:
    """Give an agent with a callback URL a signing secret; return it only if new."""
    if not agent.callback_url or agent.callback_secret_encrypted:
        return ""
    secret = crypto.generate_webhook_secret()
    with transaction.atomic():
        updated = Agent.objects.filter(pk=agent.pk, callback_secret_encrypted="").update(
            callback_secret_encrypted=crypto.encrypt_secret(secret), updated_at=timezone.now()
        )
        if not updated:
            return ""
        agent.refresh_from_db()
        audit_record(event="agent.callback_secret_generated", actor=actor, target=agent)
    return secret


def alert_raise(
    *,
    severity: str,
    kind: str,
    message: str,
    agent: Agent | None = None,
    subject: str = "",
    evidence: dict | None = None,
) -> Alert:
    """Raise an alert for agent admins. Runs inside the caller's transaction."""
    with transaction.atomic():
        alert = Alert.objects.create(
            severity=severity,
            kind=kind,
            agent=agent,
            message=message,
            subject=subject,
            evidence=evidence or {},
        )
        audit_record(
            event="alert.raised",
            target=alert,
            data={"severity": severity, "kind": kind, "message": message, "subject": subject},
        )
        if severity in (Alert.Severity.HIGH, Alert.Severity.CRITICAL):
            transaction.on_commit(lambda: _email_admins(alert))
    return alert


def _email_admins(alert: Alert) -> None:
    """Tell agent admins about a high-severity alert; a mail failure is only logged."""
    from django.contrib.auth import get_user_model

    recipients = list(
        get_user_model()
        .objects.filter(groups__name="Agent admins", is_active=True)
        .exclude(email="")
        .values_list("email", flat=True)
        .distinct()
    )
    if not recipients:
        return
    subject = f"[aispm] {alert.get_severity_display()} alert: {alert.kind}"
    body = (
        f"{alert.message}\n\nAgent: {alert.agent.slug if alert.agent else '-'}\n"
        f"Raised: {alert.created_at:%Y-%m-%d %H:%M} UTC\n"
    )
    try:
        send_mail(subject.replace("\n", " ")[:200], body, None, recipients)
    except Exception:  # noqa: BLE001 - alerting must not fail the change that raised it
        log.exception("could not email alert %s", alert.pk)


def global_stop_set(*, engaged: bool, reason: str, actor) -> GlobalStop:
    """Engage or lift the global stop. While engaged, nothing is released."""
    reason = (reason or "").strip()
    if engaged and not reason:
        raise ValueError("Say why the global stop is engaged.")
    with transaction.atomic():
        stop, _ = GlobalStop.objects.select_for_update().get_or_create(pk=1)
        stop.engaged = engaged
        stop.reason = reason
        stop.changed_by = _user_or_none(actor)
        stop.changed_at = timezone.now()
        stop.save()
        audit_record(
            event="global_stop.engaged" if engaged else "global_stop.lifted",
            actor=actor,
            target=stop,
            data={"reason": reason},
        )
    return stop


# --- credentials and kill switches ---------------------------------------------------------


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
        if old.revoked_at is not None and old.revoked_at <= timezone.now():
            raise ValueError("This key is already revoked; issue a new one instead.")
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
        if key.revoked_at is not None and key.revoked_at <= now:
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


def agent_suspend(*, agent: Agent, actor: Any = None, reason: str) -> Agent:
    """The per-agent kill switch: new submissions get 403, queued releases are blocked,
    pending decisions are frozen."""
    reason = (reason or "").strip()
    if not reason:
        raise ValueError("Say why the agent is suspended.")
    with transaction.atomic():
        agent = Agent.objects.select_for_update().get(pk=agent.pk)
        if agent.status == Agent.Status.SUSPENDED:
            return agent
        agent.status = Agent.Status.SUSPENDED
        agent.suspended_reason = reason
        agent.updated_at = timezone.now()
        agent.save(update_fields=["status", "suspended_reason", "updated_at"])
        audit_record(event="agent.suspended", actor=actor, target=agent, data={"reason": reason})
    return agent


def agent_resume(*, agent: Agent, actor: Any = None, reason: str = "") -> Agent:
    with transaction.atomic():
        agent = Agent.objects.select_for_update().get(pk=agent.pk)
        if agent.status == Agent.Status.ACTIVE:
            return agent
        agent.status = Agent.Status.ACTIVE
        agent.suspended_reason = ""
        agent.updated_at = timezone.now()
        agent.save(update_fields=["status", "suspended_reason", "updated_at"])
        audit_record(event="agent.resumed", actor=actor, target=agent, data={"reason": reason})
    return agent


def alert_acknowledge(*, alert: Alert, actor, comment: str = "") -> Alert:
    with transaction.atomic():
        alert = Alert.objects.select_for_update().get(pk=alert.pk)
        if alert.acknowledged_at is not None:
            return alert
        alert.acknowledged_at = timezone.now()
        alert.acknowledged_by = _user_or_none(actor)
        alert.acknowledgement = comment
        alert.save(update_fields=["acknowledged_at", "acknowledged_by", "acknowledgement"])
        audit_record(
            event="alert.acknowledged", actor=actor, target=alert, data={"comment": comment}
        )
    return alert


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


def address_seen(*, agent: Agent, ip: str | None) -> bool:
    """Record the address an agent's key was used from; True if it is new (and not the
    agent's first ever, which is its baseline). Runs only for agents with a new_ip rule."""
    if not ip:
        return False
    if SeenAddress.objects.filter(agent=agent, ip=ip).exists():
        return False
    first = not SeenAddress.objects.filter(agent=agent).exists()
    with transaction.atomic():
        _, created = SeenAddress.objects.get_or_create(agent=agent, ip=ip)
    return created and not first


def new_ip_respond(*, agent: Agent, ip: str, rule: dict) -> None:
    subject = f"{agent.pk}:new_ip:{ip}"
    with transaction.atomic():
        if not Alert.objects.filter(subject=subject).exists():
            alert_raise(
                severity=rule["severity"],
                kind="anomaly.new_ip",
                agent=agent,
                subject=subject,
                message=f"{agent.slug}: a key was used from a new address, {ip}.",
                evidence={"ip": ip, "rule": rule},
            )
        if rule["action"] == "suspend":
            agent_suspend(agent=agent, reason=f"Anomaly new_ip: a key was used from {ip}.")
        elif rule["action"] == "force_review":
            Agent.objects.filter(pk=agent.pk).update(
                force_review_until=timezone.now() + timedelta(hours=1),
                force_review_reason=f"A key was used from a new address, {ip}.",
            )


def anomaly_rules_set(*, target: Agent | ActionType, rules: list, actor: Any = None) -> bool:
    """Replace an agent's or action type's anomaly rules; True if they changed."""
    with transaction.atomic():
        target = type(target).objects.select_for_update().get(pk=target.pk)
        if target.anomaly_rules == rules:
            return False
        before = target.anomaly_rules
        type(target).objects.filter(pk=target.pk).update(
            anomaly_rules=rules, updated_at=timezone.now()
        )
        audit_record(
            event="anomaly_rules.changed",
            actor=actor,
            target=target,
            data={"before": before, "after": rules},
        )
    return True
