"""Reviewers' verdicts: approve (with edits through the agent's own gate), reject,
and bulk approval of routine decisions."""

import contextlib
import functools
import hmac
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from agents.models import RISK_RANK, Agent, BehaviourVersion, Outcome
from approvals import anomalies, passkeys, policy, scope
from approvals.models import Decision, Review
from audit.services import audit_record

from ._common import (
    ApprovalRefused,
    DecisionChanged,
    DecisionConflict,
    DecisionExpired,
    ReviewNotAllowed,
    _transition,
    already_decided,
    effective_params,
    enqueue_release,
    notify,
    params_fingerprint,
)
from .creation import routed
from .expiry import decision_expire
from .reroute import behaviour_regression_check
from .submission import SubmissionRefused, params_evaluate


def _refusal(*, decision: Decision, reviewer) -> ApprovalRefused | None:
    if decision.is_pending and decision.expires_at and decision.expires_at <= timezone.now():
        # The expiry sweep has not reached it yet; an expired decision is never approved.
        return DecisionExpired("This decision has expired.", decision=decision)
    if not decision.is_pending:
        return DecisionConflict(already_decided(decision), decision=decision)
    if decision.agent.status != Agent.Status.ACTIVE:
        return ReviewNotAllowed(
            f"{decision.agent.slug} is suspended, so its pending decisions are frozen."
        )
    if decision.agent.owner_id is not None and decision.agent.owner_id == reviewer.pk:
        return ReviewNotAllowed("You own this agent, so you cannot review its decisions.")
    if any(review.reviewer_id == reviewer.pk for review in decision.reviews.all()):
        return ReviewNotAllowed("You have already reviewed this decision.")
    return None


def review_refusal(decision: Decision, reviewer) -> str | None:
    """Why `reviewer` may not approve or reject `decision` now, or None if they may.

    The services check this under the row lock; the inbox asks it to show the buttons.
    """
    refusal = _refusal(decision=decision, reviewer=reviewer)
    return str(refusal) if refusal else None


def _check_reviewer(*, decision: Decision, reviewer) -> None:
    refusal = _refusal(decision=decision, reviewer=reviewer)
    if refusal is not None:
        raise refusal


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
    route, notes = routed(
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
    release: bool = True,
    assertion: str | None = None,
    relying_party: passkeys.RelyingParty | None = None,
) -> Decision:
    """Record one approval; the decision is approved once enough distinct people agree.

    A step-up decision (passkeys.step_up_required) needs `assertion`, a WebAuthn
    assertion over the statement of this approval, checked for `relying_party`.

    `approved_params` is set when the reviewer edited the params before approving.
    `expected_params_hash` is params_fingerprint() of the params the reviewer was
    shown; if the decision holds other params now, nothing is recorded.

    Edited params pass the agent's own gate first (see _edit_route). A refused edit
    raises EditRefused and records only the attempt. An edit that the policy routes
    to more approvals or a higher risk is stored as a proposal: the decision stays
    pending under the new route and the editor's approval counts as one. Approvals
    count only for the params they were given to. With release=False a decision this
    approval approves is not released (seeded demo data).
    """
    try:
        return _approve_locked(
            decision=decision,
            reviewer=reviewer,
            comment=comment,
            approved_params=approved_params,
            expected_params_hash=expected_params_hash,
            release=release,
            assertion=assertion,
            relying_party=relying_party,
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
    release: bool,
    assertion: str | None = None,
    relying_party: passkeys.RelyingParty | None = None,
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
        signed = _step_up(
            decision, approved_params if edited else current, reviewer, assertion, relying_party
        )
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
        if signed is not None:
            passkeys.review_signature_attach(review=review, signed=signed)
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
                "signed": signed is not None,
                **({"signature": signed.audit_data()} if signed else {}),
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
        if release:
            enqueue_release(decision)
        notify(decision, "approved")
    return decision


class StepUpRequired(ReviewNotAllowed):
    """A step-up decision approved without a valid passkey assertion for this approval."""


def _step_up(decision, params, reviewer, assertion, relying_party):
    if not passkeys.step_up_required(decision):
        return None
    if relying_party is None:
        raise StepUpRequired("This decision needs an approval signed with a passkey.")
    try:
        return passkeys.step_up_verify(
            decision=decision,
            params=params,
            reviewer=reviewer,
            assertion=assertion,
            rp=relying_party,
        )
    except passkeys.PasskeyRefused as refusal:
        raise StepUpRequired(str(refusal)) from None


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
        raise ApprovalRefused("A reason is required to reject a decision.")
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
        notify(decision, "rejected")
        behaviour_regression_check(agent=decision.agent)
    return decision


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
