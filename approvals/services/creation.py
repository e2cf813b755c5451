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
from approvals import standing as standing_approvals
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
    status = status_for(route)
    with transaction.atomic():
        # Standing approvals (issue 17): only in place of asking one reviewer; never
        # past a deny rule, a second approver or an anomaly signal.
        standing = None
        if standing_eligible(
            status=status, route=route, notes=notes, version=version, action_type=action_type
        ):
            standing = standing_approvals.standing_match(
                agent=agent, action_type=action_type, params=params, risk=route.risk, now=now
            )
        if standing is not None:
            status = Decision.Status.APPROVED
            route = dataclasses.replace(
                route,
                explanation=f"{route.explanation} Allowed by standing approval {standing.pk}.",
            )
        decision = decision_row(
            agent=agent,
            action_type=action_type,
            key=key,
            status=status,
            standing=standing,
            params=params,
            reasoning=reasoning,
            evidence=evidence,
            confidence=confidence,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
            external_ref=external_ref,
            version=version,
            route=route,
            notes=notes,
            now=now,
        )
        decision.save(force_insert=True)
        audit_record(
            event="decision.submitted",
            actor=agent,
            target=decision,
            data=submitted_data(
                decision=decision,
                key=key,
                route=route,
                canonicalised=canonicalised,
                standing=standing,
                channel=channel,
            ),
        )
        if standing is not None:
            audit_record(
                event="standing_approval.used",
                actor=agent,
                target=standing,
                data={"decision": str(decision.pk), "used_count": standing.used_count},
            )
        if status == Decision.Status.APPROVED:
            if release:
                enqueue_release(decision)
            notify(decision, "approved")
    return decision


def status_for(route: policy.Route) -> str:
    return {
        Outcome.ALLOW: Decision.Status.APPROVED,
        Outcome.DENY: Decision.Status.DENIED,
    }.get(route.outcome, Decision.Status.PENDING)


def standing_eligible(
    *, status: str, route: policy.Route, notes: list, version, action_type: ActionType
) -> bool:
    """Whether a standing approval could stand in for the one reviewer this route asks."""
    return (
        status == Decision.Status.PENDING
        and route.approvals == 1
        and not notes
        and not standing_approvals.never_standing(action_type, route.risk)
        and not standing_approvals.step_up_needed(
            version=version, rule_id=route.rule, risk=route.risk
        )
    )


def decision_row(
    *,
    agent: Agent,
    action_type: ActionType,
    key: AgentKey | None,
    status: str,
    standing,
    params: dict,
    reasoning: str,
    evidence: dict,
    confidence: float | None,
    idempotency_key: str | None,
    request_hash: str,
    external_ref: str,
    version,
    route: policy.Route,
    notes: list,
    now,
) -> Decision:
    """The new decision, not yet saved."""
    approved = status == Decision.Status.APPROVED
    pending = status == Decision.Status.PENDING
    return _new_decision(
        agent=agent,
        action_type=action_type,
        key=key,
        status=status,
        approval=(Decision.Approval.STANDING if standing else Decision.Approval.AUTO)
        if approved
        else "",
        standing_approval=standing,
        escalate_at=now + route.escalate_after if pending and route.escalate_after else None,
        escalate_to=route.escalate_to,
        summary=render_summary(action_type.summary_template, params),
        params=params,
        approved_params=params if approved else None,
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
        expires_at=now + route.ttl if pending else None,
        decided_at=now if not pending else None,
    )


def _new_decision(**values) -> Decision:
    """Decision(**values), built as the ORM builds the rows it reads: every concrete
    field positionally (Model.__init__'s fast path; a field not given takes its
    default), then each related object given cached, as its descriptor caches it.
    Keyword construction of this forty-field model is a measurable part of ingest."""
    args, related = [], []
    for field in Decision._meta.concrete_fields:
        if field.name in values:
            value = values.pop(field.name)
            if field.is_relation:
                related.append((field, value))
                value = None if value is None else getattr(value, field.target_field.attname)
        elif field.attname in values:
            value = values.pop(field.attname)
        else:
            value = field.get_default()
        args.append(value)
    if values:
        raise TypeError(f"Decision() got unexpected fields: {', '.join(values)}")
    decision = Decision(*args)
    for field, value in related:
        field.set_cached_value(decision, value)
    return decision


def submitted_data(
    *,
    decision: Decision,
    key: AgentKey | None,
    route: policy.Route,
    canonicalised: dict | None,
    standing,
    channel: str,
) -> dict:
    """The data of a new decision's `decision.submitted` audit event."""
    return {
        "action": decision.action_type.key,
        "status": decision.status,
        "params": decision.params,
        "evidence": decision.evidence,
        "reasoning": decision.reasoning,
        "confidence": decision.confidence,
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
        **({"standing_approval": str(standing.pk)} if standing else {}),
    }
