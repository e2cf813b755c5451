"""Releasing approved decisions: claim, re-check, deliver through the connector,
record the attempt, retry with backoff, and sweep up releases nobody finished."""

import logging
import random
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from agents.models import Agent, AgentKey, Grant
from agents.selectors import global_stop_engaged
from agents.services import alert_raise
from aispm_site.logging import bind_decision_id
from approvals import canaries, connectors, scope, tasks
from approvals.models import Decision, ReleaseAttempt
from audit.services import audit_record

from . import release_pg
from ._common import LEASE_TOLERANCE, DecisionConflict, _transition, effective_params, notify

log = logging.getLogger("approvals.tasks")


def backoff(attempt: int) -> int:
    """Exponential backoff with full jitter, in whole seconds."""
    ceiling = settings.AISPM_RELEASE_BACKOFF_SECONDS * 2 ** max(attempt - 1, 0)
    return max(1, int(random.uniform(ceiling / 2, ceiling)))


def decision_release(*, decision_id: str) -> str:
    """Release one approved decision; return what happened, for the task's log.

    Claim it (one worker only), re-check it just before acting, deliver it through
    its connector and record the attempt. A retryable failure with attempts left
    keeps it releasing until its backoff runs out, and schedules the retry. Losing
    the claim does nothing, so duplicate deliveries of a task are harmless.
    """
    bind_decision_id(decision_id)
    try:
        pk = uuid.UUID(str(decision_id))
    except ValueError:
        return "missing"
    decision, reason = _claim_and_check(pk)
    if decision is None:
        return reason
    if reason:
        decision_block(decision=decision, reason=reason)
        return "blocked"
    connector = connectors.connector_for(decision.action_type)
    started_at = timezone.now()
    delivery = connector.deliver(decision=decision, params=effective_params(decision))
    retry_in = None
    if (
        not delivery.succeeded
        and delivery.retryable
        and decision.release_attempts < settings.AISPM_RELEASE_MAX_ATTEMPTS
    ):
        retry_in = backoff(decision.release_attempts)
    decision = decision_release_record(
        decision=decision,
        delivery=delivery,
        connector=connector.kind,
        started_at=started_at,
        retry_in=retry_in,
    )
    if retry_in is not None:
        if settings.CELERY_TASK_ALWAYS_EAGER:
            # In-process mode must not sleep in a request: `run_periodic` sweeps the
            # decision up again once its lease (the backoff) has run out.
            return "retrying"
        try:
            tasks.release_decision.apply_async(args=[decision_id], countdown=retry_in)
        except Exception:  # noqa: BLE001 - the sweeper picks it up when the lease runs out
            log.warning("could not schedule retry of %s; the sweeper will", decision_id)
        return "retrying"
    return decision.status


def _release_lease() -> timedelta:
    return timedelta(seconds=settings.AISPM_RELEASE_LEASE_SECONDS)


def _claim_and_check(pk: uuid.UUID) -> tuple[Decision | None, str]:
    """Claim the decision and re-check it: (the claimed decision, why it must not be
    released or ""), or (None, "missing" / "not claimable").

    On PostgreSQL the claim, its audit event and every read of the re-check are one
    statement (release_pg); elsewhere the ORM does the same in several."""
    if release_pg.supported():
        now = timezone.now()
        claimed = release_pg.claim(
            decision_id=pk,
            now=now,
            lease_until=now + _release_lease(),
            taken_over_before=now + LEASE_TOLERANCE,
        )
        if claimed is None:
            exists = Decision.objects.filter(pk=pk).exists()
            return None, "not claimable" if exists else "missing"
        decision = claimed.decision
        reason = _blocker(
            decision,
            stopped=claimed.stopped,
            agent=decision.agent,
            key=claimed.key,
            grant=claimed.grant,
        )
        return decision, reason or ""
    decision = Decision.objects.select_related("agent", "action_type").filter(pk=pk).first()
    if decision is None:
        return None, "missing"
    try:
        decision = decision_release_claim(decision=decision)
    except DecisionConflict:
        return None, "not claimable"
    return decision, release_blocker(decision) or ""


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
    if delivery.succeeded and release_pg.supported():
        # The common case, in one statement: the attempt, released, and both events.
        if not release_pg.record_released(
            decision=decision,
            delivery=delivery,
            connector=connector,
            started_at=started_at,
            result=result,
            now=now,
        ):
            decision.refresh_from_db()
            raise DecisionConflict(
                f"Decision is {decision.status}, so it cannot become released.",
                decision=decision,
            )
        decision.status, decision.updated_at = Decision.Status.RELEASED, now
        decision.release_result, decision.released_at = result, now
        decision.release_lease_until = None
        notify(decision, "released")
        return decision
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
            notify(decision, "released")
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
            notify(decision, "failed")
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
    key = None
    if decision.key_id is not None:
        key = AgentKey.objects.filter(pk=decision.key_id).first()
    grant = (
        Grant.objects.select_related("action_type")
        .filter(agent_id=decision.agent_id, action_type_id=decision.action_type_id)
        .first()
    )
    return _blocker(
        decision,
        stopped=global_stop_engaged(),
        agent=Agent.objects.get(pk=decision.agent_id),
        key=key,
        grant=grant,
    )


def _blocker(
    decision: Decision, *, stopped: bool, agent: Agent, key: AgentKey | None, grant: Grant | None
) -> str | None:
    """The re-check, on rows read after the claim: canary, global stop, agent, key, grant
    and the grant's constraint on the params to release."""
    if decision.canary:
        return canaries.BLOCK_REASON
    if stopped:
        return "The global stop is engaged."
    if not agent.is_active:
        return f"The agent {agent.slug} is suspended."
    revoked = key is None or key.state_at(timezone.now()) == AgentKey.State.REVOKED
    if decision.key_id is not None and revoked:
        return "The key that submitted this decision has been revoked."
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
        notify(decision, "blocked")
    return decision


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
