"""The agents and action types themselves, written declaratively (apply_governance)."""

import hmac
from typing import Any

from django.db import transaction
from django.utils import timezone

from audit.services import audit_record

from .. import crypto
from ..models import ActionType, Agent, Outcome
from ._common import ActionTypeApplied, AgentsRefusal, Applied, _bump_scope, _username


def _same_secret(token: str, secret: str) -> bool:
    try:
        return hmac.compare_digest(crypto.decrypt_secret(token), secret)
    except crypto.SecretDecryptError:
        return False


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
        raise AgentsRefusal(
            f"{key}: allow is not permitted as the default of an irreversible action"
        )
    connector_config = dict(connector_config or {})
    stores_secret = connector_type == ActionType.Connector.WEBHOOK and not connector_config.get(
        "secret_env"
    )
    if connector_secret and not stores_secret:
        raise AgentsRefusal(f"{key}: only a webhook connector without secret_env stores a secret")
    if connector_secret and not crypto.is_webhook_secret(connector_secret):
        raise AgentsRefusal(
            f"{key}: the connector secret must be a whsec_ Standard Webhooks secret"
        )
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
