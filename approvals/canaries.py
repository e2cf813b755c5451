"""Canary decisions: synthetic decisions that should clearly be rejected (issue 17).

An agent admin opts an agent in by defining a template, e.g. a payment to an unknown
IBAN. Now and then beat inserts one as a pending decision that looks like any other:
it is marked a canary only in the database (`Decision.canary`) and in the audit trail,
which auditors read. A canary is never released, whichever path approves it (the
inbox, bulk approval, a chat link or a standing approval): release refuses it and
raises an alert that says so. Canaries never reach connectors or agent callbacks, and
never count in the agent's own metrics, rate limits or feedback.
"""

import random
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from agents.models import ActionType, Agent, Grant, Outcome
from agents.selectors import active_behaviour
from agents.services import alert_raise
from agents.summary import render_summary
from audit.services import audit_record

from . import policy, scope
from .models import CanaryTemplate, Decision

BLOCK_REASON = "Canary: a synthetic decision that tests reviewer attention. It is never released."


class CanaryRefused(Exception):
    pass


def canary_template_save(
    *,
    actor,
    agent: Agent,
    action_type: ActionType,
    params: dict,
    reasoning: str,
    evidence: dict | None = None,
    rate_percent: int = 5,
    enabled: bool = True,
    template: CanaryTemplate | None = None,
) -> CanaryTemplate:
    """Create or change an agent's canary template; the params must fit the action."""
    if not Grant.objects.filter(agent=agent, action_type=action_type).exists():
        raise CanaryRefused(f"{agent.slug} has no grant for {action_type.key}.")
    checked = scope.checked_params(action_type=action_type, params=params)
    if checked.errors:
        raise CanaryRefused(f"The params do not match the schema of {action_type.key}.")
    with transaction.atomic():
        template = template or CanaryTemplate(agent=agent, created_by=actor)
        template.action_type = action_type
        template.params = checked.params
        template.reasoning = reasoning
        template.evidence = evidence or {}
        template.rate_percent = rate_percent
        template.enabled = enabled
        template.save()
        audit_record(
            event="canary.template_saved",
            actor=actor,
            target=template,
            data={
                "agent": agent.slug,
                "action": action_type.key,
                "params": template.params,
                "rate_percent": rate_percent,
                "enabled": enabled,
            },
        )
    return template


def canary_insert(*, template: CanaryTemplate, now: datetime | None = None) -> Decision:
    """Insert one pending canary decision, routed like the real thing but never allowed."""
    now = now or timezone.now()
    agent, action_type = template.agent, template.action_type
    version = active_behaviour(agent)
    route = policy.route(
        version=version,
        agent=agent,
        action_type=action_type,
        params=template.params,
        evidence=template.evidence,
        confidence=None,
    )
    with transaction.atomic():
        decision = Decision.objects.create(
            agent=agent,
            action_type=action_type,
            status=Decision.Status.PENDING,
            summary=render_summary(action_type.summary_template, template.params),
            params=template.params,
            reasoning=template.reasoning,
            evidence=template.evidence,
            policy_outcome=Outcome.REVIEW,
            policy_rule=route.rule if route.outcome == Outcome.REVIEW else "",
            policy_explanation=route.explanation
            if route.outcome == Outcome.REVIEW
            else "Routed to review.",
            risk=route.risk,
            bulk_allowed=route.bulk,
            required_approvals=route.approvals,
            # Shown like any decision's; the metrics leave canaries out by their flag.
            behaviour_version=version.number if version else None,
            created_at=now,
            updated_at=now,
            expires_at=now + route.ttl,
            canary=True,
        )
        audit_record(
            event="canary.inserted",
            actor="system:canary",
            target=decision,
            data={"template": template.pk, "agent": agent.slug, "action": action_type.key},
        )
    return decision


def canaries_insert_due(*, now: datetime | None = None, rng: random.Random | None = None) -> list:
    """One beat run: each enabled template of an active agent fires with its rate."""
    rng = rng or random.SystemRandom()
    inserted = []
    templates = CanaryTemplate.objects.filter(
        enabled=True, agent__status=Agent.Status.ACTIVE
    ).select_related("agent", "action_type")
    for template in templates:
        if rng.randrange(100) < template.rate_percent:
            inserted.append(canary_insert(template=template, now=now))
    return inserted


def canary_blocked(*, decision: Decision) -> None:
    """Inside decision_block's transaction: tell agent admins who approved a canary."""
    approvers = sorted(
        review.reviewer.get_username()
        for review in decision.reviews.select_related("reviewer")
        if review.verdict != "reject"
    )
    alert_raise(
        severity="high",
        kind="canary_approved",
        agent=decision.agent,
        subject=str(decision.pk),
        message=(
            f"A canary decision ({decision.action_type.key}) was approved by "
            f"{', '.join(approvers) or 'nobody recorded'} and blocked at release; "
            "it was never carried out."
        ),
        evidence={"decision": str(decision.pk), "approved_by": approvers},
    )
