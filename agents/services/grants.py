from typing import Any

from django.db import transaction
from django.utils import timezone

from audit.services import audit_record

from ..models import ActionType, Agent, Grant
from ..policy_rules import validate_constraint
from ._common import AgentsRefusal, Applied, _bump_scope


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
        raise AgentsRefusal("; ".join(str(problem) for problem in problems))
    if limit_per_hour is not None and limit_per_hour < 1:
        raise AgentsRefusal("limit_per_hour must be at least 1, or None for no limit")
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
