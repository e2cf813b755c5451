import hashlib
import json
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from audit.services import audit_record

from ..models import ActionType, Agent, BehaviourVersion
from ..policy_rules import validate_policy
from ._common import AgentsRefusal, _user_or_none


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
        raise AgentsRefusal("; ".join(str(problem) for problem in problems))
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
