from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from audit.services import audit_record

from ..models import Agent, GlobalStop
from ._common import AgentsRefusal, _user_or_none


def global_stop_set(*, engaged: bool, reason: str, actor) -> GlobalStop:
    """Engage or lift the global stop. While engaged, nothing is released."""
    reason = (reason or "").strip()
    if engaged and not reason:
        raise AgentsRefusal("Say why the global stop is engaged.")
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


def agent_suspend(*, agent: Agent, actor: Any = None, reason: str) -> Agent:
    """The per-agent kill switch: new submissions get 403, queued releases are blocked,
    pending decisions are frozen."""
    reason = (reason or "").strip()
    if not reason:
        raise AgentsRefusal("Say why the agent is suspended.")
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


def agent_force_review(*, agent: Agent, until: datetime, reason: str, actor: Any = None) -> Agent:
    """Until `until`, nothing of this agent is auto-allowed: policy allows go to review."""
    with transaction.atomic():
        agent = Agent.objects.select_for_update().get(pk=agent.pk)
        if agent.force_review_until == until and agent.force_review_reason == reason:
            return agent
        agent.force_review_until = until
        agent.force_review_reason = reason
        agent.save(update_fields=["force_review_until", "force_review_reason"])
        audit_record(
            event="agent.review_forced",
            actor=actor,
            target=agent,
            data={"until": until, "reason": reason},
        )
    return agent
