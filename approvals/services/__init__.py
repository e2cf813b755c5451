"""Writes on decisions, by lifecycle stage. Every transition is a conditional update
and is audited in the same transaction.

- submission: the pipeline that turns an agent's request into a decision;
- creation: its policy and create steps (route, store, audit);
- review: reviewers' verdicts (approve, edit, reject, bulk);
- release: claim, deliver, record, retry and sweep approved decisions;
- expiry: pending decisions that close without a verdict (expiry, cancel);
- reroute: behaviour changes (reroute on rollback, regression alerts).

Callers import from here (`from approvals import services`).
"""

from ._common import (
    APPROVED_STATES,
    LEASE_TOLERANCE,
    ApprovalRefused,
    DecisionChanged,
    DecisionConflict,
    DecisionExpired,
    ReviewNotAllowed,
    already_decided,
    effective_params,
    may_have_reviews,
    params_fingerprint,
)
from .creation import decision_create
from .expiry import decision_cancel, decision_expire, decisions_past_expiry
from .release import (
    backoff,
    callback_failed,
    decision_block,
    decision_release,
    decision_release_claim,
    decision_release_finish,
    decision_release_record,
    release_blocker,
    releases_to_sweep,
)
from .reroute import Reroute, behaviour_regression_check, decisions_reroute
from .review import (
    BulkApproval,
    EditRefused,
    EditRoute,
    StepUpRequired,
    approvals_for_current_params,
    decision_approve,
    decision_bulk_approve,
    decision_edit_refuse,
    decision_reject,
    is_bulk_approvable,
    review_refusal,
)
from .submission import (
    PIPELINE,
    Evaluated,
    KeyChanged,
    Submission,
    SubmissionRefused,
    decision_submit,
    params_evaluate,
    request_fingerprint,
)

__all__ = [
    "APPROVED_STATES",
    "LEASE_TOLERANCE",
    "PIPELINE",
    "ApprovalRefused",
    "BulkApproval",
    "DecisionChanged",
    "DecisionConflict",
    "DecisionExpired",
    "EditRefused",
    "StepUpRequired",
    "EditRoute",
    "Evaluated",
    "KeyChanged",
    "Reroute",
    "ReviewNotAllowed",
    "Submission",
    "SubmissionRefused",
    "already_decided",
    "approvals_for_current_params",
    "backoff",
    "behaviour_regression_check",
    "callback_failed",
    "decision_approve",
    "decision_block",
    "decision_bulk_approve",
    "decision_cancel",
    "decision_create",
    "decision_edit_refuse",
    "decision_expire",
    "decision_reject",
    "decision_release",
    "decision_release_claim",
    "decision_release_finish",
    "decision_release_record",
    "decision_submit",
    "decisions_past_expiry",
    "decisions_reroute",
    "effective_params",
    "is_bulk_approvable",
    "may_have_reviews",
    "params_evaluate",
    "params_fingerprint",
    "release_blocker",
    "releases_to_sweep",
    "request_fingerprint",
    "review_refusal",
]
