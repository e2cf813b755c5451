"""Celery tasks: release approved decisions, tell agents, sweep and expire.

Tasks take ids and call services, which hold the work; the services import this
module at the top to enqueue, so tasks import the services inside the function.
A task that loses the claim on a decision does nothing, so duplicate deliveries of
a message are harmless.
"""

import logging

from celery import shared_task
from django.utils import timezone

from agents import crypto
from aispm_site.logging import bind_decision_id

from . import connectors
from .models import Decision

log = logging.getLogger(__name__)


@shared_task(acks_late=True, ignore_result=True)
def release_decision(decision_id: str) -> str:
    from . import services

    return services.decision_release(decision_id=decision_id)


@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=5)
def notify_agent(self, decision_id: str, event: str) -> str:
    """POST a signed status event to the agent's callback URL."""
    from . import services

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
        raise self.retry(countdown=services.backoff(self.request.retries + 1))
    services.callback_failed(decision=decision, event=event, error=delivery.error)
    return "failed"


@shared_task(ignore_result=True)
def sweep_releases() -> int:
    """Re-enqueue approved decisions nobody picked up, and releases whose worker died."""
    from . import services

    ids = services.releases_to_sweep(now=timezone.now())
    for decision_id in ids:
        release_decision.delay(str(decision_id))
    if ids:
        log.info("swept %d releases", len(ids))
    return len(ids)


@shared_task(ignore_result=True)
def expire_pending_decisions() -> int:
    from . import services

    expired = 0
    for decision in services.decisions_past_expiry(now=timezone.now()):
        try:
            services.decision_expire(decision=decision)
            expired += 1
        except services.DecisionConflict:
            continue
    return expired


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
def run_posture_checks() -> int:
    """Every 15 minutes: open and resolve posture findings; returns how many are open."""
    from .posture import posture_run

    return posture_run().open
