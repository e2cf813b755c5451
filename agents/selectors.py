"""Reads on agents that the hot submission path makes on every request.

Behaviour versions are immutable, so a version loaded once is kept per process.
Grants are kept per process too, keyed by the agent's scope_version, which every
grant or action-type change bumps in its own transaction; the key lookup reads it
fresh on each request, so a removed grant is never served from a stale cache.
"""

from uuid import UUID

from .models import Agent, BehaviourVersion, GlobalStop, Grant

_CACHE_LIMIT = 4096
_VERSIONS: dict[tuple[int, UUID], BehaviourVersion] = {}
_SCOPES: dict[UUID, tuple[int, dict[str, Grant]]] = {}


def active_behaviour(agent: Agent) -> BehaviourVersion | None:
    version_id = agent.active_behaviour_id
    if version_id is None:
        return None
    cache_key = (version_id, agent.pk)
    version = _VERSIONS.get(cache_key)
    if version is None:
        if len(_VERSIONS) >= _CACHE_LIMIT:
            _VERSIONS.clear()
        version = _VERSIONS[cache_key] = BehaviourVersion.objects.get(pk=version_id)
    return version


def agent_grants(agent: Agent) -> dict[str, Grant]:
    """The agent's grants by action key, each with its action type loaded."""
    cached = _SCOPES.get(agent.pk)
    if cached is None or cached[0] != agent.scope_version:
        if len(_SCOPES) >= _CACHE_LIMIT:
            _SCOPES.clear()
        grants = Grant.objects.select_related("action_type").filter(agent_id=agent.pk)
        cached = _SCOPES[agent.pk] = (
            agent.scope_version,
            {grant.action_type.key: grant for grant in grants},
        )
    return cached[1]


def global_stop_engaged() -> bool:
    return GlobalStop.objects.filter(engaged=True).exists()


def activation_history(agent: Agent, *, limit: int = 50) -> list[dict]:
    """Who made which version active, when, from which version, and why: newest first,
    from the audit trail (behaviour_version.activated and .rolled_back)."""
    from audit.models import AuditEvent

    version_ids = [str(pk) for pk in agent.behaviour_versions.values_list("pk", flat=True)]
    events = (
        AuditEvent.objects.filter(
            event__in=["behaviour_version.activated", "behaviour_version.rolled_back"],
            target_type=BehaviourVersion._meta.label_lower,
            target_id__in=version_ids,
        )
        .select_related("actor_user")
        .order_by("-created_at", "-id")[:limit]
    )
    return [
        {
            "at": event.created_at,
            "who": event.actor_user.get_username() if event.actor_user else event.actor_label,
            "to": event.data.get("number"),
            "previous": event.data.get("previous"),
            "reason": event.data.get("reason") or "",
            "rollback": event.event == "behaviour_version.rolled_back",
        }
        for event in events
    ]
