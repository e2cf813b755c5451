"""Shared by the lifecycle stages: the domain refusals, the conditional-update
transition, the params a decision would release, and enqueueing after commit."""

import hashlib
import json
from datetime import timedelta
from functools import partial

from django.db import transaction
from django.utils import timezone

from approvals import tasks
from approvals.models import Decision

# A retry scheduled for time T may be delivered a moment early.
LEASE_TOLERANCE = timedelta(milliseconds=500)


class ApprovalRefused(Exception):
    """A domain refusal of the approvals app: the change is not made, and the message
    says why in words a reviewer or an agent can read."""


class DecisionConflict(ApprovalRefused):
    """The decision is not in a state that allows this; `decision` is its current row."""

    def __init__(self, message: str, *, decision: Decision | None = None):
        super().__init__(message)
        self.decision = decision


class DecisionChanged(DecisionConflict):
    """The params a reviewer saw are not the params the decision holds now."""


class ReviewNotAllowed(ApprovalRefused):
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


def enqueue_release(decision: Decision) -> None:
    """Release `decision` once the current transaction commits.

    A broker outage must not fail the change that was just committed: robust=True
    logs the failure, and the sweeper finds approved decisions nobody picked up.
    """
    transaction.on_commit(partial(tasks.release_decision.delay, str(decision.pk)), robust=True)


def notify(decision: Decision, event: str) -> None:
    """Tell the agent about `event` once the current transaction commits."""
    if decision.agent.callback_url:
        transaction.on_commit(
            partial(tasks.notify_agent.delay, str(decision.pk), event), robust=True
        )
