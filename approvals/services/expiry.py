"""Pending decisions that close without a verdict: the agent cancels, or time runs out."""

from django.db import transaction
from django.utils import timezone

from agents.models import Agent
from approvals.models import Decision
from audit.services import audit_record

from ._common import _transition, notify


def decision_cancel(*, decision: Decision, agent: Agent) -> Decision:
    with transaction.atomic():
        decision = _transition(
            decision=decision,
            from_statuses={Decision.Status.PENDING},
            to=Decision.Status.CANCELLED,
            decided_at=timezone.now(),
            status_reason="Cancelled by the agent.",
        )
        audit_record(event="decision.cancelled", actor=agent, target=decision)
    return decision


def decision_expire(*, decision: Decision) -> Decision:
    with transaction.atomic():
        decision = _transition(
            decision=decision,
            from_statuses={Decision.Status.PENDING},
            to=Decision.Status.EXPIRED,
            decided_at=timezone.now(),
            status_reason="No decision before it expired.",
        )
        audit_record(
            event="decision.expired", target=decision, data={"expires_at": decision.expires_at}
        )
        notify(decision, "expired")
    return decision


def decisions_past_expiry(*, now, limit: int = 1000) -> list[Decision]:
    return list(
        Decision.objects.filter(status=Decision.Status.PENDING, expires_at__lte=now)
        .select_related("agent")
        .order_by("expires_at")[:limit]
    )
