"""Storing a decision: route the params through the agent's policy (with anomaly
signals and force-review) and create the row, audited, in one transaction. The
submission pipeline's policy and create steps, and reviewers' edits, use these."""

import dataclasses

from django.db import transaction
from django.utils import timezone

from agents.models import ActionType, Agent, AgentKey, Outcome
from agents.selectors import active_behaviour
from agents.summary import render_summary
from approvals import anomalies, policy
from approvals.models import Decision
from audit.services import audit_record

from ._common import enqueue_release, notify


def routed(
    *,
    version,
    agent: Agent,
    action_type: ActionType,
    params: dict,
    evidence: dict,
    confidence: float | None,
    anomaly_signals: list,
    now,
) -> tuple[policy.Route, list[dict]]:
    """The policy route for these params, after anomaly signals and force-review."""
    route = policy.route(
        version=version,
        agent=agent,
        action_type=action_type,
        params=params,
        evidence=evidence,
        confidence=confidence,
    )
    notes = [signal.as_json() for signal in anomaly_signals]
    if agent.force_review_until and agent.force_review_until > now:
        notes.append(
            {"rule": "force_review", "action": "force_review", "message": agent.force_review_reason}
        )
    if notes:
        explanation = route.explanation
        if route.outcome == Outcome.ALLOW and any(n["action"] != "alert" for n in notes):
            explanation += " Routed to review by anomaly detection."
            route = dataclasses.replace(route, outcome=Outcome.REVIEW, bulk=False)
        route = dataclasses.replace(
            route,
            explanation=explanation,
            risk=anomalies.raised_risk(route.risk, notes),
            bulk=False,
        )
    return route, notes


def decision_create(
    *,
    agent: Agent,
    action_type: ActionType,
    params: dict,
    reasoning: str,
    evidence: dict | None = None,
    confidence: float | None = None,
    key: AgentKey | None = None,
    idempotency_key: str | None = None,
    request_hash: str = "",
    external_ref: str = "",
    anomaly_signals: list = (),
    canonicalised: dict | None = None,
    release: bool = True,
    channel: str = "api",
) -> Decision:
    """Route a proposed action through the agent's active policy and store it.

    Scope, rate and schema checks happen before this, in the submission pipeline.
    Anomaly signals, and an agent under a force-review anomaly, turn an allow into
    a review, say why, and raise the risk; they never lower it. With release=False an
    approved decision is stored but not released (seeded demo data).
    """
    evidence = evidence or {}
    version = active_behaviour(agent)
    now = timezone.now()
    route, notes = routed(
        version=version,
        agent=agent,
        action_type=action_type,
        params=params,
        evidence=evidence,
        confidence=confidence,
        anomaly_signals=anomaly_signals,
        now=now,
    )
    return _decision_store(
        agent=agent,
        action_type=action_type,
        key=key,
        params=params,
        reasoning=reasoning,
        evidence=evidence,
        confidence=confidence,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        external_ref=external_ref,
        canonicalised=canonicalised,
        version=version,
        route=route,
        notes=notes,
        now=now,
        release=release,
        channel=channel,
    )


def _decision_store(
    *,
    agent: Agent,
    action_type: ActionType,
    key: AgentKey | None,
    params: dict,
    reasoning: str,
    evidence: dict,
    confidence: float | None,
    idempotency_key: str | None,
    request_hash: str,
    external_ref: str,
    canonicalised: dict | None,
    version,
    route: policy.Route,
    notes: list,
    now,
    release: bool = True,
    channel: str = "api",
) -> Decision:
    status = {
        Outcome.ALLOW: Decision.Status.APPROVED,
        Outcome.DENY: Decision.Status.DENIED,
    }.get(route.outcome, Decision.Status.PENDING)
    with transaction.atomic():
        decision = Decision.objects.create(
            agent=agent,
            action_type=action_type,
            key=key,
            status=status,
            approval=Decision.Approval.AUTO if status == Decision.Status.APPROVED else "",
            summary=render_summary(action_type.summary_template, params),
            params=params,
            approved_params=params if status == Decision.Status.APPROVED else None,
            reasoning=reasoning,
            evidence=evidence,
            confidence=confidence,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
            external_ref=external_ref,
            policy_outcome=route.outcome,
            policy_rule=route.rule,
            policy_explanation=route.explanation,
            risk=route.risk,
            bulk_allowed=route.bulk,
            anomalies=notes,
            required_approvals=route.approvals,
            behaviour_version=version.number if version else None,
            created_at=now,
            updated_at=now,
            expires_at=now + route.ttl if status == Decision.Status.PENDING else None,
            decided_at=now if status != Decision.Status.PENDING else None,
        )
        audit_record(
            event="decision.submitted",
            actor=agent,
            target=decision,
            data={
                "action": action_type.key,
                "status": status,
                "params": params,
                "evidence": evidence,
                "reasoning": reasoning,
                "confidence": confidence,
                "policy": {
                    "outcome": route.outcome,
                    "rule": route.rule,
                    "explanation": route.explanation,
                },
                "risk": route.risk,
                "required_approvals": route.approvals,
                "behaviour_version": decision.behaviour_version,
                "key_id": key.pk if key else None,
                "channel": channel,
                **({"canonicalised": canonicalised} if canonicalised else {}),
            },
        )
        if status == Decision.Status.APPROVED:
            if release:
                enqueue_release(decision)
            notify(decision, "approved")
    return decision
