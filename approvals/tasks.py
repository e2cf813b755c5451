"""Celery tasks: release approved decisions, tell agents, sweep and expire.

Tasks take ids, load the row and call services. A task that loses the claim on a
decision does nothing, so duplicate deliveries of a message are harmless.
"""

import logging
import random

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from agents import crypto
from aispm_site.logging import bind_decision_id

from . import (
    capacity_tasks,  # noqa: F401, I001 - registers them
    connectors,
    services,
)
from .models import Decision
from .notifications import tasks as notification_tasks  # noqa: F401 - registers them

log = logging.getLogger(__name__)


def backoff(attempt: int) -> int:
    """Exponential backoff with full jitter, in whole seconds."""
    ceiling = settings.AISPM_RELEASE_BACKOFF_SECONDS * 2 ** max(attempt - 1, 0)
    return max(1, int(random.uniform(ceiling / 2, ceiling)))


@shared_task(bind=True, acks_late=True, ignore_result=True)
def release_decision(self, decision_id: str) -> str:
    bind_decision_id(decision_id)
    decision = (
        Decision.objects.select_related("agent", "action_type").filter(pk=decision_id).first()
    )
    if decision is None:
        return "missing"
    try:
        decision = services.decision_release_claim(decision=decision)
    except services.DecisionConflict:
        return "not claimable"
    reason = services.release_blocker(decision)
    if reason:
        services.decision_block(decision=decision, reason=reason)
        return "blocked"
    connector = connectors.connector_for(decision.action_type)
    started_at = timezone.now()
    delivery = connector.deliver(decision=decision, params=services.effective_params(decision))
    retry_in = None
    if (
        not delivery.succeeded
        and delivery.retryable
        and decision.release_attempts < settings.AISPM_RELEASE_MAX_ATTEMPTS
    ):
        retry_in = backoff(decision.release_attempts)
    decision = services.decision_release_record(
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
            self.apply_async(args=[decision_id], countdown=retry_in)
        except Exception:  # noqa: BLE001 - the sweeper picks it up when the lease runs out
            log.warning("could not schedule retry of %s; the sweeper will", decision_id)
        return "retrying"
    return decision.status


@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=5)
def notify_agent(self, decision_id: str, event: str) -> str:
    """POST a signed status event to the agent's callback URL."""
    bind_decision_id(decision_id)
    decision = (
        Decision.objects.select_related("agent", "action_type").filter(pk=decision_id).first()
    )
    if decision is None or not decision.agent.callback_url:
        return "skipped"
    agent = decision.agent
    try:
        secret = crypto.decrypt_secret(agent.callback_secret_encrypted)
    except crypto.SecretDecryptError:
        return "no secret"
    payload = {
        "type": f"decision.{event}",
        "decision_id": str(decision.pk),
        "action": decision.action_type.key,
        "status": decision.status,
        "status_reason": decision.status_reason,
        "external_ref": decision.external_ref,
    }
    delivery = connectors.post_signed(
        url=agent.callback_url, secret=secret, message_id=f"{decision.pk}.{event}", payload=payload
    )
    if delivery.succeeded:
        return "sent"
    if delivery.retryable and self.request.retries < self.max_retries:
        raise self.retry(countdown=backoff(self.request.retries + 1))
    services.callback_failed(decision=decision, event=event, error=delivery.error)
    return "failed"


@shared_task(ignore_result=True)
def sweep_releases() -> int:
    """Re-enqueue approved decisions nobody picked up, and releases whose worker died."""
    ids = services.releases_to_sweep(now=timezone.now())
    for decision_id in ids:
        release_decision.delay(str(decision_id))
    if ids:
        log.info("swept %d releases", len(ids))
    return len(ids)


@shared_task(ignore_result=True)
def expire_pending_decisions() -> int:
    expired = 0
    for decision in services.decisions_past_expiry(now=timezone.now()):
        try:
            services.decision_expire(decision=decision)
            expired += 1
        except services.DecisionConflict:
            continue
    return expired


@shared_task(ignore_result=True)
def verify_audit_chain() -> bool:
    """Daily: seal, verify the whole chain, and alert the admins if it is broken."""
    import time

    from agents.services import alert_raise
    from audit import services as audit_services

    while audit_services.audit_seal():
        pass
    started = time.monotonic()
    from audit.checkpoints import evidence_verify  # the chain and its signed checkpoints

    report = evidence_verify()
    audit_services.audit_verification_record(
        report=report, duration_ms=int((time.monotonic() - started) * 1000)
    )
    if not report.ok:
        alert_raise(
            severity="critical",
            kind="audit_chain_broken",
            subject=str(report.first_broken_id),
            message=f"The audit chain is broken at event {report.first_broken_id}: "
            f"{report.problem}",
            evidence={"first_broken_id": report.first_broken_id, "problem": report.problem},
        )
    return report.ok


@shared_task(ignore_result=True)
def detect_rate_spikes() -> int:
    """Compare each watched agent's recent submission rate with its rolling baseline."""
    from agents.models import Agent

    from . import anomalies

    fired = 0
    now = timezone.now()
    for agent in Agent.objects.exclude(anomaly_rules=[]):
        signals = anomalies.rate_spike(agent=agent, now=now)
        if signals:
            anomalies.respond(agent=agent, signals=signals, now=now)
            fired += len(signals)
    return fired


@shared_task(ignore_result=True)
def check_key_ages() -> int:
    from agents.services import key_age_alerts

    return len(key_age_alerts())


@shared_task(ignore_result=True)
def run_posture_checks() -> int:
    """Every 15 minutes: open and resolve posture findings; returns how many are open."""
    from .posture import posture_run

    return posture_run().open
