"""How often the demo's anomaly rules fire on the simulator's normal traffic.

Normal traffic is the simulator's in-scope mix (no deliberate out-of-scope or
attack cards), spread over two simulated hours, with reviewers approving half of
what waits for them, as a team clearing its inbox would.
"""

import io
import random
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.management import call_command

from agents.models import Agent, Alert
from agents.services import agent_key_issue
from approvals import services
from approvals.models import Decision
from demo.management.commands.seed_demo import DEMO_CONFIG
from demo.simulation import MIX
from tests.factories import UserFactory, reviewer

pytestmark = pytest.mark.django_db
REQUESTS = 480


def test_the_demo_rules_rarely_fire_on_normal_traffic(capsys):
    UserFactory(username="agentadmin")
    call_command("apply_governance", str(DEMO_CONFIG), stdout=io.StringIO())
    keys = {agent.slug: agent_key_issue(agent=agent).key for agent in Agent.objects.all()}
    people = [reviewer() for _ in range(3)]
    rng = random.Random(7)
    cards = [(agent, gen) for agent, mix in MIX.items() for gen, count in mix for _ in range(count)]
    # A fixed start keeps the hourly rate-limit windows, and so the run, deterministic.
    start = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    forced = 0
    for n in range(REQUESTS):
        agent, generator = rng.choice(cards)
        request = generator(rng)
        with time_machine.travel(start + timedelta(seconds=15 * n)):
            key = keys[agent]
            key.agent.refresh_from_db()
            try:
                submission = services.decision_submit(
                    key=key,
                    action=request.action,
                    params=request.params,
                    reasoning=request.reasoning,
                    evidence=request.evidence,
                    confidence=request.confidence,
                )
            except services.SubmissionRefused:
                continue
            decision = submission.decision
            forced += "Routed to review by anomaly detection" in decision.policy_explanation
            if decision.status == Decision.Status.PENDING and rng.random() < 0.5:
                for person in people[: decision.required_approvals]:
                    services.decision_approve(decision=decision, reviewer=person)
    alerts = Alert.objects.filter(kind__startswith="anomaly.")
    by_rule = {}
    for alert in alerts:
        by_rule[alert.kind] = by_rule.get(alert.kind, 0) + 1
    with capsys.disabled():
        print(
            f"\nanomaly false positives on {REQUESTS} normal requests: {alerts.count()} alerts "
            f"({alerts.count() / REQUESTS:.1%}) {by_rule}; {forced} decisions that policy would "
            f"have allowed were forced to review ({forced / REQUESTS:.1%})"
        )
    # Suspensions and burst alerts must never fire on normal traffic.
    assert not Agent.objects.filter(status=Agent.Status.SUSPENDED).exists()
    bursts = ["anomaly.out_of_scope", "anomaly.denial_burst", "anomaly.rate_spike"]
    assert not alerts.filter(kind__in=bursts).exists()
    # New destinations are expected while reviewers build up the seen set, then fade;
    # two payments to one supplier within the hour can look like a split.
    assert alerts.count() / REQUESTS < 0.02
