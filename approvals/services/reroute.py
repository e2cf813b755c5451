"""Behaviour changes: reroute pending decisions after a rollback, and alert when a
new version is rejected more often than the one before."""

from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from agents.models import Agent, Alert, Outcome
from agents.selectors import active_behaviour
from agents.services import alert_raise
from approvals import policy
from approvals.models import Decision
from approvals.selectors import version_metrics
from audit.services import audit_record

from ._common import DecisionConflict, _transition


@dataclass(frozen=True)
class Reroute:
    rerouted: int
    cancelled: int


def decisions_reroute(*, agent: Agent, left_version: int, actor) -> Reroute:
    """Re-evaluate the pending decisions created under `left_version` against the
    agent's active policy (after a rollback). Those it denies are cancelled with
    the reason; the others keep waiting for review under their new route. Each
    decision keeps the version number it was created under."""
    agent = Agent.objects.get(pk=agent.pk)
    version = active_behaviour(agent)
    rerouted = cancelled = 0
    pending = Decision.objects.filter(
        agent=agent, status=Decision.Status.PENDING, behaviour_version=left_version
    ).select_related("action_type")
    for decision in pending:
        route = policy.route(
            version=version,
            agent=agent,
            action_type=decision.action_type,
            params=decision.params,
            evidence=decision.evidence,
            confidence=decision.confidence,
        )
        before = {
            "outcome": decision.policy_outcome,
            "rule": decision.policy_rule,
            "required_approvals": decision.required_approvals,
        }
        after = {
            "outcome": route.outcome,
            "rule": route.rule,
            "required_approvals": route.approvals,
        }
        with transaction.atomic():
            if route.outcome == Outcome.DENY:
                explanation = f"Cancelled on rollback to v{version.number}: {route.explanation}"
                try:
                    decision = _transition(
                        decision=decision,
                        from_statuses={Decision.Status.PENDING},
                        to=Decision.Status.CANCELLED,
                        decided_at=timezone.now(),
                        status_reason=explanation,
                        policy_outcome=route.outcome,
                        policy_rule=route.rule,
                        policy_explanation=route.explanation,
                    )
                except DecisionConflict:
                    continue
                cancelled += 1
                event = "decision.cancelled_on_rollback"
            else:
                explanation = route.explanation
                if route.outcome == Outcome.ALLOW:
                    explanation += " (Rerouted on rollback; it still needs a reviewer.)"
                updated = Decision.objects.filter(
                    pk=decision.pk, status=Decision.Status.PENDING
                ).update(
                    policy_outcome=Outcome.REVIEW
                    if route.outcome == Outcome.ALLOW
                    else route.outcome,
                    policy_rule=route.rule,
                    policy_explanation=explanation,
                    risk=route.risk,
                    bulk_allowed=route.bulk,
                    required_approvals=route.approvals,
                    updated_at=timezone.now(),
                )
                if not updated:
                    continue
                rerouted += 1
                event = "decision.rerouted"
            audit_record(
                event=event,
                actor=actor,
                target=decision,
                data={
                    "restored_version": version.number,
                    "left_version": left_version,
                    "before": before,
                    "after": after,
                    "explanation": explanation,
                },
            )
    return Reroute(rerouted=rerouted, cancelled=cancelled)


def behaviour_regression_check(*, agent: Agent) -> Alert | None:
    """Alert when the active version's rejection rate exceeds the previous version's by
    AISPM_REGRESSION_MARGIN over at least AISPM_REGRESSION_MIN_DECISIONS reviews."""
    version = active_behaviour(agent)
    if version is None or version.number < 2:
        return None
    metrics = {m["version"]: m for m in version_metrics(agent=agent)}
    current, previous = metrics.get(version.number), metrics.get(version.number - 1)
    if not current or not previous or current["reviewed"] < settings.AISPM_REGRESSION_MIN_DECISIONS:
        return None
    if previous["rejection_rate"] is None or current["rejection_rate"] is None:
        return None
    if current["rejection_rate"] - previous["rejection_rate"] <= settings.AISPM_REGRESSION_MARGIN:
        return None
    subject = f"{agent.slug}:v{version.number}"
    if Alert.objects.filter(kind="behaviour_regression", subject=subject).exists():
        return None
    return alert_raise(
        severity="high",
        kind="behaviour_regression",
        agent=agent,
        subject=subject,
        message=(
            f"{agent.slug} v{version.number} is rejected {current['rejection_rate']:.0%} of the "
            f"time, against {previous['rejection_rate']:.0%} for v{version.number - 1}. "
            f"Consider rolling back."
        ),
        evidence={
            "version": version.number,
            "previous": version.number - 1,
            "rejection_rate": current["rejection_rate"],
            "previous_rejection_rate": previous["rejection_rate"],
            "reviewed": current["reviewed"],
            "rollback_url": reverse(
                "agents:activate", kwargs={"slug": agent.slug, "number": version.number - 1}
            ),
        },
    )
