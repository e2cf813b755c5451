"""Writes on decisions. Every transition is a conditional update and is audited."""

import contextlib
import dataclasses
import functools
import hashlib
import hmac
import json
import logging
import threading
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from agents.models import (
    RISK_RANK,
    ActionType,
    Agent,
    AgentKey,
    Alert,
    BehaviourVersion,
    Grant,
    Outcome,
)
from agents.selectors import active_behaviour, global_stop_engaged
from agents.services import alert_raise
from agents.summary import render_summary
from audit.services import audit_record

from . import anomalies, canaries, policy, ratelimit, scope
from . import standing as standing_approvals
from .models import Decision, ReleaseAttempt, Review

log = logging.getLogger(__name__)
# A retry scheduled for time T may be delivered a moment early.
LEASE_TOLERANCE = timedelta(milliseconds=500)


class DecisionConflict(Exception):
    """The decision is not in a state that allows this; `decision` is its current row."""

    def __init__(self, message: str, *, decision: Decision | None = None):
        super().__init__(message)
        self.decision = decision


class DecisionChanged(DecisionConflict):
    """The params a reviewer saw are not the params the decision holds now."""


class ReviewNotAllowed(Exception):
    """This reviewer may not act on this decision (own agent, already reviewed...)."""


def _transition(*, decision: Decision, from_statuses: set[str], to: str, **fields) -> Decision:
    """Move `decision` to `to` if it is still in one of `from_statuses`, else conflict."""
    now = timezone.now()
    updated = Decision.objects.filter(pk=decision.pk, status__in=from_statuses).update(
        status=to, updated_at=now, **fields
    )
    decision.refresh_from_db()
    if updated != 1:
        raise DecisionConflict(
            f"Decision is {decision.status}, so it cannot become {to}.", decision=decision
        )
    return decision


def _routed(
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
) -> Decision:
    """Route a proposed action through the agent's active policy and store it.

    Scope, rate and schema checks happen before this, in the submission pipeline.
    Anomaly signals, and an agent under a force-review anomaly, turn an allow into
    a review, say why, and raise the risk; they never lower it.
    """
    evidence = evidence or {}
    version = active_behaviour(agent)
    now = timezone.now()
    route, notes = _routed(
        version=version,
        agent=agent,
        action_type=action_type,
        params=params,
        evidence=evidence,
        confidence=confidence,
        anomaly_signals=anomaly_signals,
        now=now,
    )
    status = {
        Outcome.ALLOW: Decision.Status.APPROVED,
        Outcome.DENY: Decision.Status.DENIED,
    }.get(route.outcome, Decision.Status.PENDING)
    with transaction.atomic():
        standing = None
        if status == Decision.Status.PENDING and route.approvals == 1 and not notes:
            standing = standing_approvals.standing_match(
                agent=agent, action_type=action_type, params=params, risk=route.risk, now=now
            )
        if standing is not None:
            status = Decision.Status.APPROVED
            route = dataclasses.replace(
                route,
                explanation=f"{route.explanation} Allowed by standing approval {standing.pk}.",
            )
        decision = Decision.objects.create(
            agent=agent,
            action_type=action_type,
            key=key,
            status=status,
            approval=(Decision.Approval.STANDING if standing else Decision.Approval.AUTO)
            if status == Decision.Status.APPROVED
            else "",
            standing_approval=standing,
            escalate_at=now + route.escalate_after
            if status == Decision.Status.PENDING and route.escalate_after
            else None,
            escalate_to=route.escalate_to,
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
                **({"canonicalised": canonicalised} if canonicalised else {}),
                **({"standing_approval": str(standing.pk)} if standing else {}),
            },
        )
        if standing is not None:
            audit_record(
                event="standing_approval.used",
                actor=agent,
                target=standing,
                data={"decision": str(decision.pk), "used_count": standing.used_count},
            )
        if status == Decision.Status.APPROVED:
            _enqueue_release(decision)
            _notify(decision, "approved")
    return decision


APPROVED_STATES = {
    Decision.Status.APPROVED,
    Decision.Status.RELEASING,
    Decision.Status.RELEASED,
    Decision.Status.FAILED,
    Decision.Status.BLOCKED,
}


def already_decided(decision: Decision) -> str:
    """What a reviewer who lost the race is told: the verdict and who gave it."""
    by = f" by {decision.decided_by.get_username()}" if decision.decided_by else ""
    if decision.status in APPROVED_STATES:
        if decision.approval == Decision.Approval.AUTO:
            return "Already approved automatically by policy."
        return f"Already approved{by}."
    return f"Already {decision.status}{by}."


class DecisionExpired(DecisionConflict):
    pass


def _check_reviewer(*, decision: Decision, reviewer) -> None:
    if decision.is_pending and decision.expires_at and decision.expires_at <= timezone.now():
        # The expiry sweep has not reached it yet; an expired decision is never approved.
        raise DecisionExpired("This decision has expired.", decision=decision)
    if not decision.is_pending:
        raise DecisionConflict(already_decided(decision), decision=decision)
    if decision.agent.status != Agent.Status.ACTIVE:
        raise ReviewNotAllowed(
            f"{decision.agent.slug} is suspended, so its pending decisions are frozen."
        )
    if decision.agent.owner_id is not None and decision.agent.owner_id == reviewer.pk:
        raise ReviewNotAllowed("You own this agent, so you cannot review its decisions.")
    if decision.reviews.filter(reviewer=reviewer).exists():
        raise ReviewNotAllowed("You have already reviewed this decision.")


def _expire_if_late(review_action):
    """A review that finds its decision past expiry records the expiry, then refuses."""

    @functools.wraps(review_action)
    def wrapped(*, decision: Decision, **kwargs):
        try:
            return review_action(decision=decision, **kwargs)
        except DecisionExpired:
            with contextlib.suppress(DecisionConflict):
                decision_expire(decision=decision)
            raise

    return wrapped


def params_fingerprint(params) -> str:
    """A hash of params as displayed, so an approval can prove what the reviewer saw."""
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def may_have_reviews(decision: Decision) -> bool:
    """False when no review can exist, so a caller can skip looking for them."""
    return (
        decision.approval == Decision.Approval.HUMAN
        or decision.status == Decision.Status.REJECTED
        or decision.required_approvals > 1
    )


def effective_params(decision: Decision) -> dict:
    """What would be released: an earlier reviewer's edit, else the agent's params."""
    return decision.approved_params if decision.approved_params is not None else decision.params


class EditRefused(Exception):
    """A reviewer's edit that the agent's own gate refuses (schema, grant, constraint or a
    policy deny). Nothing is recorded but the refused attempt."""

    def __init__(self, message: str, *, code: str, rule: str = "", details: dict | None = None):
        super().__init__(message)
        self.code = code
        self.rule = rule
        self.details = details or {}


@dataclass(frozen=True)
class EditRoute:
    """Where the agent's gate routes a reviewer's edited params."""

    route: policy.Route
    notes: list
    proposal: bool
    params: dict  # the edited params in canonical form, as they will be released


def approvals_for_current_params(reviews) -> list[Review]:
    """The approvals that count: those given to the params the decision holds now.

    Only an edit changes the params, so every approval before the last edit was given
    to other params (another params hash) and no longer counts.
    """
    reviews = sorted(reviews, key=lambda review: review.pk)
    edits = [i for i, review in enumerate(reviews) if review.verdict == Review.Verdict.EDIT_APPROVE]
    since = edits[-1] if edits else 0
    return [review for review in reviews[since:] if review.verdict != Review.Verdict.REJECT]


def _edit_route(*, decision: Decision, params: dict, now) -> EditRoute:
    """Put a reviewer's edited params through the agent's gate, as the agent: the grant
    (which must still exist) and its constraint, the schema, the anomaly rules that
    inspect params, and the policy of the decision's behaviour version."""
    agent, action_type = decision.agent, decision.action_type
    grant = scope.grant_for(agent=agent, action_key=action_type.key)
    if grant is None or grant.action_type_id != action_type.pk:
        raise EditRefused(
            f"The agent's grant for {action_type.key} has been removed, so no edit can be "
            "approved.",
            code="out_of_scope",
        )
    try:
        evaluated = params_evaluate(
            agent=agent,
            grant=grant,
            params=params,
            evidence=decision.evidence,
            confidence=decision.confidence,
            now=now,
            exclude=decision,
        )
    except SubmissionRefused as refusal:
        message = refusal.message
        if refusal.code == "invalid" and refusal.details:
            message += " " + "; ".join(
                f"{path}: {' '.join(errors)}" for path, errors in list(refusal.details.items())[:5]
            )
        raise EditRefused(message, code=refusal.code, details=refusal.details) from None
    params, signals = evaluated.params, evaluated.signals
    version = (
        BehaviourVersion.objects.filter(agent=agent, number=decision.behaviour_version).first()
        if decision.behaviour_version is not None
        else None
    )
    route, notes = _routed(
        version=version,
        agent=agent,
        action_type=action_type,
        params=params,
        evidence=decision.evidence,
        confidence=decision.confidence,
        anomaly_signals=signals,
        now=now,
    )
    if route.outcome == Outcome.DENY:
        raise EditRefused(
            f"Policy rule {route.rule!r} denies the edited params: {route.explanation}",
            code="denied",
            rule=route.rule,
        )
    higher_risk = RISK_RANK.get(route.risk, 4) > RISK_RANK.get(decision.risk, 0)
    more_approvals = route.approvals > decision.required_approvals
    return EditRoute(
        route=route, notes=notes, proposal=higher_risk or more_approvals, params=params
    )


@_expire_if_late
def decision_approve(
    *,
    decision: Decision,
    reviewer,
    comment: str = "",
    approved_params: dict | None = None,
    expected_params_hash: str | None = None,
) -> Decision:
    """Record one approval; the decision is approved once enough distinct people agree.

    `approved_params` is set when the reviewer edited the params before approving.
    `expected_params_hash` is params_fingerprint() of the params the reviewer was
    shown; if the decision holds other params now, nothing is recorded.

    Edited params pass the agent's own gate first (see _edit_route). A refused edit
    raises EditRefused and records only the attempt. An edit that the policy routes
    to more approvals or a higher risk is stored as a proposal: the decision stays
    pending under the new route and the editor's approval counts as one. Approvals
    count only for the params they were given to.
    """
    try:
        return _approve_locked(
            decision=decision,
            reviewer=reviewer,
            comment=comment,
            approved_params=approved_params,
            expected_params_hash=expected_params_hash,
        )
    except EditRefused as refusal:
        decision_edit_refuse(
            decision=decision,
            reviewer=reviewer,
            params=approved_params,
            reason=str(refusal),
            code=refusal.code,
            rule=refusal.rule,
            comment=comment,
        )
        raise


def decision_edit_refuse(
    *,
    decision: Decision,
    reviewer,
    params,
    reason: str,
    code: str,
    rule: str = "",
    comment: str = "",
) -> None:
    """Record a reviewer's refused edit; the attempt is all that is recorded."""
    with transaction.atomic():
        audit_record(
            event="decision.edit_refused",
            actor=reviewer,
            target=decision,
            data={
                "code": code,
                "reason": reason,
                "rule": rule,
                "comment": comment,
                "params_before": effective_params(decision),
                "params_after": params,
            },
        )


def _edit_notes(notes: list, existing: list) -> list:
    fresh = [{**note, "message": f"After the edit: {note['message']}"} for note in notes]
    return existing + [note for note in fresh if note not in existing]


def _approve_locked(
    *,
    decision: Decision,
    reviewer,
    comment: str,
    approved_params: dict | None,
    expected_params_hash: str | None,
) -> Decision:
    with transaction.atomic():
        decision = Decision.objects.select_for_update().get(pk=decision.pk)
        _check_reviewer(decision=decision, reviewer=reviewer)
        current = effective_params(decision)
        if expected_params_hash is not None and not hmac.compare_digest(
            expected_params_hash, params_fingerprint(current)
        ):
            raise DecisionChanged(
                "This decision changed since you opened it. Review it again.", decision=decision
            )
        edited = approved_params is not None and approved_params != current
        now = timezone.now()
        gate = _edit_route(decision=decision, params=approved_params, now=now) if edited else None
        if gate is not None:
            approved_params = gate.params
        try:
            with transaction.atomic():
                review = Review.objects.create(
                    decision=decision,
                    reviewer=reviewer,
                    verdict=Review.Verdict.EDIT_APPROVE if edited else Review.Verdict.APPROVE,
                    comment=comment,
                    params_before=current if edited else None,
                    params_after=approved_params if edited else None,
                )
        except IntegrityError:
            raise ReviewNotAllowed("You have already reviewed this decision.") from None
        if gate is not None and gate.proposal:
            return _propose_edit(decision=decision, review=review, gate=gate, now=now)
        approvals = len(approvals_for_current_params(decision.reviews.all()))
        audit_record(
            event="decision.review_added",
            actor=reviewer,
            target=decision,
            data={
                "verdict": review.verdict,
                "comment": comment,
                "params_before": review.params_before,
                "params_after": review.params_after,
                "approvals": approvals,
                "required_approvals": decision.required_approvals,
            },
        )
        if edited:
            Decision.objects.filter(pk=decision.pk).update(
                approved_params=approved_params,
                anomalies=_edit_notes(gate.notes, decision.anomalies or []),
                bulk_allowed=False,
                updated_at=now,
            )
        if approvals < decision.required_approvals:
            decision.refresh_from_db()
            return decision
        decision = _transition(
            decision=decision,
            from_statuses={Decision.Status.PENDING},
            to=Decision.Status.APPROVED,
            approval=Decision.Approval.HUMAN,
            decided_at=now,
            decided_by=reviewer,
            approved_params=approved_params if edited else current,
        )
        audit_record(
            event="decision.approved",
            actor=reviewer,
            target=decision,
            data={"approvals": approvals, "approved_params": decision.approved_params},
        )
        anomalies.remember_destinations(decision=decision)
        _enqueue_release(decision)
        _notify(decision, "approved")
    return decision


def _propose_edit(*, decision: Decision, review: Review, gate: EditRoute, now) -> Decision:
    """Store an edit that needs more than the decision had: it waits, under its new route,
    for the other reviewers it needs; the editor's approval counts as one."""
    route = gate.route
    # Someone other than the editor must see the edit, even when only the risk went up.
    required = max(route.approvals, decision.required_approvals, 2)
    risk = max(route.risk, decision.risk, key=lambda value: RISK_RANK.get(value, 4))
    editor = review.reviewer.get_username()
    explanation = (
        f"{route.explanation} Edited by {editor}: the edited params need {required} "
        f"approvals at {risk} risk, so the edit waits for another reviewer. Approvals "
        "given to the earlier params no longer count."
    )
    before = {
        "rule": decision.policy_rule,
        "risk": decision.risk,
        "required_approvals": decision.required_approvals,
    }
    updated = Decision.objects.filter(pk=decision.pk, status=Decision.Status.PENDING).update(
        approved_params=review.params_after,
        policy_outcome=Outcome.REVIEW,
        policy_rule=route.rule,
        policy_explanation=explanation,
        risk=risk,
        required_approvals=required,
        bulk_allowed=False,
        anomalies=_edit_notes(gate.notes, decision.anomalies or []),
        updated_at=now,
    )
    decision.refresh_from_db()
    if updated != 1:
        raise DecisionConflict(already_decided(decision), decision=decision)
    audit_record(
        event="decision.edit_proposed",
        actor=review.reviewer,
        target=decision,
        data={
            "verdict": review.verdict,
            "comment": review.comment,
            "params_before": review.params_before,
            "params_after": review.params_after,
            "before": before,
            "after": {"rule": route.rule, "risk": risk, "required_approvals": required},
            "approvals": 1,
            "explanation": explanation,
        },
    )
    return decision


@_expire_if_late
def decision_reject(*, decision: Decision, reviewer, reason: str, tags: list[str] = ()) -> Decision:
    reason = (reason or "").strip()
    if not reason:
        raise ValueError("A reason is required to reject a decision.")
    with transaction.atomic():
        decision = Decision.objects.select_for_update().get(pk=decision.pk)
        _check_reviewer(decision=decision, reviewer=reviewer)
        Review.objects.create(
            decision=decision,
            reviewer=reviewer,
            verdict=Review.Verdict.REJECT,
            comment=reason,
            tags=list(tags),
        )
        decision = _transition(
            decision=decision,
            from_statuses={Decision.Status.PENDING},
            to=Decision.Status.REJECTED,
            decided_at=timezone.now(),
            decided_by=reviewer,
            status_reason=reason,
        )
        audit_record(
            event="decision.rejected",
            actor=reviewer,
            target=decision,
            data={"reason": reason, "tags": list(tags)},
        )
        _notify(decision, "rejected")
        behaviour_regression_check(agent=decision.agent)
    return decision


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
        _notify(decision, "expired")
    return decision


def _release_lease() -> timedelta:
    return timedelta(seconds=settings.AISPM_RELEASE_LEASE_SECONDS)


def decision_release_claim(*, decision: Decision) -> Decision:
    """Take the release of an approved decision: approved → releasing, one worker only.

    A releasing decision whose lease has run out (its worker died, or it is waiting
    for its next retry) can be taken again. Anything else is a DecisionConflict.
    """
    now = timezone.now()
    claimable = Q(status=Decision.Status.APPROVED) | Q(
        status=Decision.Status.RELEASING, release_lease_until__lte=now + LEASE_TOLERANCE
    )
    with transaction.atomic():
        updated = Decision.objects.filter(claimable, pk=decision.pk).update(
            status=Decision.Status.RELEASING,
            release_lease_until=now + _release_lease(),
            release_attempts=F("release_attempts") + 1,
            updated_at=now,
        )
        decision.refresh_from_db()
        if updated != 1:
            raise DecisionConflict(
                f"Decision is {decision.status} and not free to release.", decision=decision
            )
        audit_record(
            event="decision.release_started",
            target=decision,
            data={"attempt": decision.release_attempts},
        )
    return decision


def _attempt_result(delivery) -> dict:
    return {
        "succeeded": delivery.succeeded,
        "status_code": delivery.status_code,
        "excerpt": delivery.excerpt,
        "error": delivery.error,
        "duration_ms": delivery.duration_ms,
    }


def decision_release_record(
    *, decision: Decision, delivery, connector: str, started_at, retry_in: int | None = None
) -> Decision:
    """Record one connector attempt and move the decision on.

    Success → released. A failure with `retry_in` seconds keeps it releasing, held
    until then; any other failure → failed, with an alert for the agent admins.
    """
    now = timezone.now()
    result = _attempt_result(delivery)
    with transaction.atomic():
        ReleaseAttempt.objects.create(
            decision=decision,
            number=decision.release_attempts,
            connector=connector,
            started_at=started_at,
            duration_ms=delivery.duration_ms,
            succeeded=delivery.succeeded,
            retryable=delivery.retryable,
            status_code=delivery.status_code,
            response_excerpt=delivery.excerpt,
            error=delivery.error,
        )
        audit_record(
            event="decision.release_attempted",
            target=decision,
            data={"attempt": decision.release_attempts, "connector": connector, **result},
        )
        if delivery.succeeded:
            decision = _transition(
                decision=decision,
                from_statuses={Decision.Status.RELEASING},
                to=Decision.Status.RELEASED,
                release_result=result,
                released_at=now,
                release_lease_until=None,
            )
            audit_record(event="decision.released", target=decision, data={"result": result})
            _notify(decision, "released")
        elif retry_in is not None:
            Decision.objects.filter(pk=decision.pk, status=Decision.Status.RELEASING).update(
                release_result=result,
                release_lease_until=now + timedelta(seconds=retry_in),
                updated_at=now,
            )
            decision.refresh_from_db()
        else:
            decision = _transition(
                decision=decision,
                from_statuses={Decision.Status.RELEASING},
                to=Decision.Status.FAILED,
                release_result=result,
                release_lease_until=None,
                status_reason=delivery.error or f"HTTP {delivery.status_code}",
            )
            audit_record(event="decision.release_failed", target=decision, data={"result": result})
            alert_raise(
                severity="high",
                kind="release_failed",
                agent=decision.agent,
                subject=str(decision.pk),
                message=(
                    f"Release of {decision.action_type.key} decision {decision.pk} failed after "
                    f"{decision.release_attempts} attempt(s): {result['error'] or 'error'}."
                ),
                evidence={"decision_id": str(decision.pk), **result},
            )
            _notify(decision, "failed")
    return decision


def decision_release_finish(*, decision: Decision, succeeded: bool, result: dict) -> Decision:
    """Close a release without a connector attempt (demo data, manual resolution)."""
    now = timezone.now()
    with transaction.atomic():
        decision = _transition(
            decision=decision,
            from_statuses={Decision.Status.RELEASING},
            to=Decision.Status.RELEASED if succeeded else Decision.Status.FAILED,
            release_result=result,
            released_at=now if succeeded else None,
            release_lease_until=None,
        )
        audit_record(
            event="decision.released" if succeeded else "decision.release_failed",
            target=decision,
            data={"result": result, "attempts": decision.release_attempts},
        )
    return decision


def release_blocker(decision: Decision) -> str | None:
    """Why this decision must not be released now, checked just before acting."""
    if decision.canary:
        return canaries.BLOCK_REASON
    if global_stop_engaged():
        return "The global stop is engaged."
    agent = Agent.objects.get(pk=decision.agent_id)
    if not agent.is_active:
        return f"The agent {agent.slug} is suspended."
    if decision.key_id is not None:
        key = AgentKey.objects.filter(pk=decision.key_id).first()
        if key is None or (key.revoked_at is not None and key.revoked_at <= timezone.now()):
            return "The key that submitted this decision has been revoked."
    grant = (
        Grant.objects.select_related("action_type")
        .filter(agent_id=decision.agent_id, action_type_id=decision.action_type_id)
        .first()
    )
    if grant is None:
        return f"The agent's grant for {decision.action_type.key} has been removed."
    verdict = scope.check_constraint(
        agent=agent,
        grant=grant,
        params=effective_params(decision),
        evidence=decision.evidence,
        confidence=decision.confidence,
    )
    if not verdict.allowed:
        return f"The params to release are outside the agent's grant: {verdict.message}"
    return None


def decision_block(*, decision: Decision, reason: str) -> Decision:
    with transaction.atomic():
        decision = _transition(
            decision=decision,
            from_statuses={Decision.Status.APPROVED, Decision.Status.RELEASING},
            to=Decision.Status.BLOCKED,
            status_reason=reason,
            release_lease_until=None,
        )
        audit_record(event="decision.blocked", target=decision, data={"reason": reason})
        if decision.canary:
            canaries.canary_blocked(decision=decision)
        _notify(decision, "blocked")
    return decision


# --- enqueueing after commit -------------------------------------------------------

_suppressed = threading.local()


@contextlib.contextmanager
def release_enqueue_suppressed():
    """Create approved decisions without releasing them (demo data)."""
    _suppressed.on = True
    try:
        yield
    finally:
        _suppressed.on = False


def _after_commit(task_path: str, *args) -> None:
    """Enqueue a task once the current transaction commits.

    A broker outage must not fail the change that was just committed: the
    sweeper finds approved decisions nobody picked up and enqueues them again.
    """
    if getattr(_suppressed, "on", False):
        return

    def send():
        from . import tasks

        try:
            getattr(tasks, task_path).delay(*args)
        except Exception:  # noqa: BLE001 - any broker failure; the sweeper covers it
            log.warning("could not enqueue %s%s; the sweeper will retry", task_path, args)

    transaction.on_commit(send)


def _enqueue_release(decision: Decision) -> None:
    _after_commit("release_decision", str(decision.pk))


def _notify(decision: Decision, event: str) -> None:
    if decision.agent.callback_url and not decision.canary:
        _after_commit("notify_agent", str(decision.pk), event)


class SubmissionRefused(Exception):
    """A submission the pipeline refuses; `code` is the agent API's error code."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        details: dict | None = None,
        retry_after: int | None = None,
        audit_event: str = "",
    ):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.retry_after = retry_after
        self.audit_event = audit_event


@dataclass(frozen=True)
class Submission:
    decision: Decision
    created: bool


def request_fingerprint(
    *, action: str, params, reasoning: str, evidence, confidence, external_ref: str
) -> str:
    body = json.dumps(
        [action, params, reasoning, evidence, confidence, external_ref],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(body.encode()).hexdigest()


def _replay(*, agent: Agent, idempotency_key: str | None, request_hash: str) -> Decision | None:
    """The original decision for a replayed idempotency key, or None if there is none."""
    if not idempotency_key:
        return None
    # No ORDER BY: the key is unique per agent, so the (agent, key) index answers it.
    matches = list(
        Decision.objects.filter(agent=agent, idempotency_key=idempotency_key)
        .select_related("action_type")
        .order_by()[:1]
    )
    if not matches:
        return None
    original = matches[0]
    if original.request_hash != request_hash:
        raise SubmissionRefused(
            "conflict",
            "This idempotency key was already used with a different request body.",
            details={"idempotency_key": [f"already used for decision {original.pk}"]},
        )
    return original


def params_evaluate(
    *,
    agent: Agent,
    grant: Grant,
    params: dict,
    evidence: dict,
    confidence: float | None,
    now,
    exclude: Decision | None = None,
) -> "Evaluated":
    """The checks an agent's params pass, as the agent: the action type's JSON Schema
    (which also puts destinations in canonical form), the grant's constraint, then the
    anomaly rules that inspect params. A failed check raises SubmissionRefused.
    Reviewers' edits go through this too, with `exclude` the decision being edited.

    From here on, policy, anomaly rules, the stored decision and the connector see the
    canonical params; the originals are kept for the audit event."""
    action_type = grant.action_type
    checked = scope.checked_params(action_type=action_type, params=params)
    if checked.errors:
        raise SubmissionRefused(
            "invalid",
            f"params do not match the schema of {action_type.key}.",
            details=checked.errors,
        )
    params = checked.params
    verdict = scope.check_constraint(
        agent=agent, grant=grant, params=params, evidence=evidence, confidence=confidence
    )
    if not verdict.allowed:
        raise SubmissionRefused(
            "out_of_scope",
            verdict.message,
            details={"constraint": [grant.constraint]},
            audit_event="decision.out_of_scope",
        )
    signals = []
    if agent.anomaly_rules or action_type.anomaly_rules:
        signals = anomalies.at_submission(
            agent=agent, action_type=action_type, params=params, now=now, exclude=exclude
        )
    return Evaluated(params=params, originals=checked.originals, signals=signals)


@dataclass(frozen=True)
class Evaluated:
    """Params that passed the agent's gate, in canonical form, with the anomaly signals."""

    params: dict
    originals: dict
    signals: list


def _checked_submission(
    *,
    key: AgentKey,
    action: str,
    params: dict,
    reasoning: str,
    evidence: dict,
    confidence: float | None,
    idempotency_key: str | None,
    external_ref: str,
    request_hash: str,
) -> Decision:
    agent = key.agent
    grant = scope.grant_for(agent=agent, action_key=action)
    if grant is None:
        raise SubmissionRefused(
            "out_of_scope",
            f"Action {action!r} is unknown or not granted to this agent.",
            audit_event="decision.out_of_scope",
        )
    if not agent.is_active:
        raise SubmissionRefused(
            "agent_suspended", "This agent is suspended.", audit_event="decision.refused"
        )
    action_type = grant.action_type
    retry_after = ratelimit.check_and_count(
        agent=agent, action_type=action_type, limit=grant.limit_per_hour, now=timezone.now()
    )
    if retry_after is not None:
        raise SubmissionRefused(
            "rate_limited",
            f"Over the limit of {grant.limit_per_hour} {action} requests per hour.",
            retry_after=retry_after,
        )
    now = timezone.now()
    evaluated = params_evaluate(
        agent=agent, grant=grant, params=params, evidence=evidence, confidence=confidence, now=now
    )
    params, signals = evaluated.params, evaluated.signals
    watched = bool(agent.anomaly_rules or action_type.anomaly_rules)
    decision = decision_create(
        agent=agent,
        action_type=action_type,
        params=params,
        reasoning=reasoning,
        evidence=evidence,
        confidence=confidence,
        key=key,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        external_ref=external_ref,
        anomaly_signals=signals,
        canonicalised=evaluated.originals,
    )
    if watched and decision.status == Decision.Status.DENIED:
        signals += anomalies.after_denial(agent=agent, now=now)
    if signals:
        anomalies.respond(agent=agent, signals=signals, now=now)
    return decision


def decision_submit(
    *,
    key: AgentKey,
    action: str,
    params: dict,
    reasoning: str,
    evidence: dict | None = None,
    confidence: float | None = None,
    idempotency_key: str | None = None,
    external_ref: str = "",
) -> Submission:
    """The submission pipeline after authentication and shape validation.

    Scope, suspension, rate, params schema and constraint are checked in that order;
    a refusal raises SubmissionRefused. A replayed idempotency key returns the
    original decision (created=False), even when a check would refuse it now.
    """
    evidence = evidence or {}
    request_hash = request_fingerprint(
        action=action,
        params=params,
        reasoning=reasoning,
        evidence=evidence,
        confidence=confidence,
        external_ref=external_ref,
    )
    agent = key.agent
    # Replays return the original before any check runs, so an agent retrying after a
    # timeout gets its decision back even if its grant or limit would refuse it now.
    original = _replay(agent=agent, idempotency_key=idempotency_key, request_hash=request_hash)
    if original is not None:
        return Submission(original, created=False)
    try:
        decision = _checked_submission(
            key=key,
            action=action,
            params=params,
            reasoning=reasoning,
            evidence=evidence,
            confidence=confidence,
            idempotency_key=idempotency_key,
            external_ref=external_ref,
            request_hash=request_hash,
        )
    except IntegrityError:
        # A concurrent submission with the same key committed first.
        original = _replay(agent=agent, idempotency_key=idempotency_key, request_hash=request_hash)
        if original is None:
            raise
        return Submission(original, created=False)
    except SubmissionRefused as refusal:
        if refusal.audit_event:
            with transaction.atomic():
                audit_record(
                    event=refusal.audit_event,
                    actor=agent,
                    target=agent,
                    data={
                        "action": action,
                        "code": refusal.code,
                        "message": refusal.message,
                        "key_id": key.pk,
                    },
                )
            if refusal.code == "out_of_scope" and agent.anomaly_rules:
                now = timezone.now()
                anomalies.respond(
                    agent=agent,
                    signals=anomalies.after_out_of_scope(agent=agent, now=now),
                    now=now,
                )
        raise
    return Submission(decision, created=True)


def is_bulk_approvable(decision: Decision) -> bool:
    """Routine decisions only: the rule allows bulk, the risk is low, and never an
    irreversible action that needs more than one approver."""
    if not decision.bulk_allowed or decision.risk != "low":
        return False
    return not (decision.action_type.irreversible and decision.required_approvals > 1)


@dataclass(frozen=True)
class BulkApproval:
    approved: list[Decision]
    skipped: list[tuple[Decision, str]]


def decision_bulk_approve(*, decisions: list[Decision], reviewer) -> BulkApproval:
    """Approve each routine decision on its own (each audited); report the rest."""
    approved, skipped = [], []
    for decision in decisions:
        if not is_bulk_approvable(decision):
            skipped.append((decision, "not eligible for bulk approval"))
            continue
        try:
            approved.append(decision_approve(decision=decision, reviewer=reviewer))
        except (DecisionConflict, ReviewNotAllowed) as exc:
            skipped.append((decision, str(exc)))
    return BulkApproval(approved=approved, skipped=skipped)


def releases_to_sweep(*, now, limit: int = 500) -> list:
    """Decisions a release task should have taken by now but has not."""
    grace = timedelta(seconds=settings.AISPM_RELEASE_SWEEP_AFTER_SECONDS)
    stale = Q(status=Decision.Status.APPROVED, decided_at__lte=now - grace) | Q(
        status=Decision.Status.RELEASING, release_lease_until__lte=now - LEASE_TOLERANCE
    )
    return list(Decision.objects.filter(stale).values_list("pk", flat=True)[:limit])


def decisions_past_expiry(*, now, limit: int = 1000) -> list[Decision]:
    return list(
        Decision.objects.filter(status=Decision.Status.PENDING, expires_at__lte=now)
        .select_related("agent")
        .order_by("expires_at")[:limit]
    )


def callback_failed(*, decision: Decision, event: str, error: str) -> None:
    with transaction.atomic():
        audit_record(
            event="decision.callback_failed",
            target=decision,
            data={"event": event, "error": error},
        )
        alert_raise(
            severity="medium",
            kind="callback_failed",
            agent=decision.agent,
            subject=f"{decision.pk}.{event}",
            message=f"Could not tell {decision.agent.slug} that decision {decision.pk} "
            f"was {event}: {error or 'error'}.",
            evidence={"decision_id": str(decision.pk), "event": event, "error": error},
        )


# --- behaviour changes -----------------------------------------------------------------


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
    from .selectors import version_metrics

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
            "rollback_url": f"/agents/{agent.slug}/versions/{version.number - 1}/activate/",
        },
    )
