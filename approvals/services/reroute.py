"""Behaviour changes: reroute pending decisions after a rollback, and alert when a
new version is rejected more often than the one before."""

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from agents.models import Agent, Alert, Outcome
from agents.selectors import active_behaviour
from agents.services import alert_raise
from approvals import policy
from approvals.models import Decision
from approvals.selectors import route_changes, version_metrics
from audit.services import audit_record

from ._common import DecisionConflict, _transition

RETTL_GRACE = timedelta(minutes=15)


@dataclass(frozen=True)
class Reroute:
    rerouted: int  # still wait for review, on a different route
    cancelled: int  # the version now active denies them
    unchanged: int = 0  # already routed as that version routes them; left alone


def decisions_reroute(
    *, agent: Agent, actor, left_version: int | None = None, rollback: bool = False
) -> Reroute:
    """Route every pending decision of `agent` again through its active version, after
    an activation or a rollback. Those it denies are cancelled with the reason; those
    whose routing changes (outcome, rule, approvals, risk, ttl or bulk) keep waiting
    for review under their new route; the rest are left alone and not counted. Each
    decision keeps the version number it was created under.

    A rollback reaches the decisions re-routed by the version being left as well as
    those created under it, so the restored version's routing really is restored."""
    agent = Agent.objects.get(pk=agent.pk)
    version = active_behaviour(agent)
    occasion = f"rollback to v{version.number}" if rollback else f"activation of v{version.number}"
    rerouted = cancelled = unchanged = 0
    pending = Decision.objects.filter(agent=agent, status=Decision.Status.PENDING).select_related(
        "action_type"
    )
    for decision in pending:
        route = policy.route(
            version=version,
            agent=agent,
            action_type=decision.action_type,
            params=decision.params,
            evidence=decision.evidence,
            confidence=decision.confidence,
        )
        changes = route_changes(decision, route)
        if not changes:
            unchanged += 1
            continue
        before = {
            "outcome": decision.policy_outcome,
            "rule": decision.policy_rule,
            "required_approvals": decision.required_approvals,
            "risk": decision.risk,
            "bulk": decision.bulk_allowed,
        }
        after = {
            "outcome": route.outcome,
            "rule": route.rule,
            "required_approvals": route.approvals,
            "risk": route.risk,
            "bulk": route.bulk,
        }
        with transaction.atomic():
            if route.outcome == Outcome.DENY:
                explanation = f"Cancelled on {occasion}: {route.explanation}"
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
                event = (
                    "decision.cancelled_on_rollback"
                    if rollback
                    else "decision.cancelled_on_activation"
                )
            else:
                explanation = route.explanation
                if route.outcome == Outcome.ALLOW:
                    explanation += f" (Re-routed on {occasion}; it still needs a reviewer.)"
                now = timezone.now()
                fields = {
                    "policy_outcome": Outcome.REVIEW
                    if route.outcome == Outcome.ALLOW
                    else route.outcome,
                    "policy_rule": route.rule,
                    "policy_explanation": explanation,
                    "risk": route.risk,
                    "bulk_allowed": route.bulk,
                    "required_approvals": route.approvals,
                    "updated_at": now,
                }
                if "ttl" in changes and route.ttl is not None:
                    # The restored ttl counts from submission, but never expires a
                    # decision under a reviewer's eyes: at least RETTL_GRACE from now.
                    fields["expires_at"] = max(decision.created_at + route.ttl, now + RETTL_GRACE)
                updated = Decision.objects.filter(
                    pk=decision.pk, status=Decision.Status.PENDING
                ).update(**fields)
                if not updated:
                    continue
                rerouted += 1
                event = "decision.rerouted"
            audit_record(
                event=event,
                actor=actor,
                target=decision,
                data={
                    "restored_version" if rollback else "activated_version": version.number,
                    "left_version": left_version,
                    "changes": changes,
                    "before": before,
                    "after": after,
                    "explanation": explanation,
                },
            )
    return Reroute(rerouted=rerouted, cancelled=cancelled, unchanged=unchanged)


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
