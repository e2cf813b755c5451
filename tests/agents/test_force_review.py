"""Forcing review of an agent's decisions is a state change like any other: it goes
through agent_force_review, which records an audit event."""

from datetime import timedelta

import pytest
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone
from rest_framework.test import APIClient

from agents.models import Agent
from agents.services import agent_force_review, agent_key_issue
from audit.models import AuditEvent
from tests.factories import (
    ActionTypeFactory,
    AgentFactory,
    BehaviourVersionFactory,
    GrantFactory,
    agent_admin,
)

pytestmark = pytest.mark.django_db
URL = "/api/v1/decisions/"


def watched(rules) -> tuple[Agent, APIClient]:
    agent = AgentFactory(slug="watched", anomaly_rules=rules)
    agent.active_behaviour = BehaviourVersionFactory(
        agent=agent, number=1, policy=[{"id": "all", "outcome": "allow"}]
    )
    agent.save()
    pay = ActionTypeFactory(key="payment.transfer", params_schema={"type": "object"})
    GrantFactory(agent=agent, action_type=pay)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {agent_key_issue(agent=agent).secret}")
    return agent, api


def forced(agent) -> list[AuditEvent]:
    return list(
        AuditEvent.objects.filter(event="agent.review_forced", target_id=str(agent.pk)).order_by(
            "pk"
        )
    )


def test_an_admin_forcing_review_is_audited_with_who_until_and_why():
    agent = AgentFactory(slug="sdr-agent")
    ada = agent_admin(username="ada")
    until = timezone.now() + timedelta(hours=2)

    agent_force_review(agent=agent, until=until, reason="Checking its new prompts.", actor=ada)

    agent.refresh_from_db()
    assert agent.force_review_until == until
    assert agent.force_review_reason == "Checking its new prompts."
    [event] = forced(agent)
    assert event.actor_label == "ada"
    assert event.data["reason"] == "Checking its new prompts."
    assert event.data["until"] == DjangoJSONEncoder().default(until)


def test_forcing_the_same_review_twice_records_it_once():
    agent = AgentFactory(slug="sdr-agent")
    until = timezone.now() + timedelta(hours=1)

    agent_force_review(agent=agent, until=until, reason="Burst.")
    agent_force_review(agent=agent, until=until, reason="Burst.")

    assert len(forced(agent)) == 1


def test_a_burst_anomaly_that_forces_review_records_an_audit_event():
    rule = {
        "rule": "split_transactions",
        "for_action": "payment.transfer",
        "param": "amount",
        "threshold": 1000,
        "window": "1h",
        "action": "force_review",
    }
    agent, api = watched([rule])

    statuses = [
        api.post(
            URL,
            {"action": "payment.transfer", "reasoning": "r", "params": {"amount": 400}},
            format="json",
        ).json()["status"]
        for _ in range(3)
    ]

    assert statuses[-1] == "pending"
    agent.refresh_from_db()
    assert agent.force_review_until is not None
    events = forced(agent)
    assert events
    assert events[-1].data["reason"] == agent.force_review_reason
    assert events[-1].actor_kind == AuditEvent.ActorKind.SYSTEM


def test_a_new_address_anomaly_that_forces_review_records_an_audit_event():
    agent, api = watched([{"rule": "new_ip", "action": "force_review"}])

    api.get(URL, REMOTE_ADDR="10.0.0.1")
    assert not forced(agent)  # the first address is the baseline
    api.get(URL, REMOTE_ADDR="203.0.113.9")

    agent.refresh_from_db()
    assert agent.force_review_until is not None and agent.force_review_until > timezone.now()
    [event] = forced(agent)
    assert "203.0.113.9" in event.data["reason"]
