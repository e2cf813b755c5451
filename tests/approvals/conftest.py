import pytest
from rest_framework.test import APIClient

from agents.services import agent_key_issue
from tests.factories import (
    ActionTypeFactory,
    AgentFactory,
    BehaviourVersionFactory,
    GrantFactory,
    UserFactory,
)

EMAIL_SCHEMA = {
    "type": "object",
    "required": ["to", "subject", "body"],
    "additionalProperties": False,
    "properties": {
        "to": {"type": "array", "items": {"type": "string", "format": "email"}, "minItems": 1},
        "subject": {"type": "string", "maxLength": 300},
        "body": {"type": "string"},
    },
}
PAYMENT_SCHEMA = {
    "type": "object",
    "required": ["amount", "to"],
    "properties": {"amount": {"type": "number", "exclusiveMinimum": 0}, "to": {"type": "string"}},
}
POLICY = [
    {
        "id": "deny-competitors",
        "action": "email.send",
        "when": "params.to.exists(t, t.endsWith('@competitor.example'))",
        "outcome": "deny",
        "reason": "Never email competitors",
    },
    {
        "id": "bulk-needs-two",
        "action": "email.send",
        "when": "size(params.to) > 10",
        "outcome": "review",
        "approvals": 2,
        "reason": "Bulk email needs two approvers",
    },
    {
        "id": "follow-ups",
        "action": "email.send",
        "outcome": "review",
        "ttl": "8h",
        "reason": "Outbound email is reviewed",
    },
    {
        "id": "two-approvers-over-1000",
        "action": "payment.transfer",
        "when": "params.amount > 1000",
        "outcome": "review",
        "approvals": 2,
        "ttl": "4h",
        "risk": "high",
    },
    {
        "id": "small-payments",
        "action": "payment.transfer",
        "outcome": "allow",
        "reason": "Small payments are fine",
    },
]


@pytest.fixture
def email_action(db):
    return ActionTypeFactory(
        key="email.send",
        summary_template="Email to {to}: {subject}",
        params_schema=EMAIL_SCHEMA,
        irreversible=True,
    )


@pytest.fixture
def payment_action(db):
    return ActionTypeFactory(
        key="payment.transfer",
        summary_template="Pay {amount} to {to}",
        params_schema=PAYMENT_SCHEMA,
    )


@pytest.fixture
def agent(db, email_action, payment_action):
    agent = AgentFactory(slug="sdr-agent", owner=UserFactory(username="owner"))
    agent.active_behaviour = BehaviourVersionFactory(agent=agent, number=1, policy=POLICY)
    agent.save()
    GrantFactory(
        agent=agent,
        action_type=email_action,
        limit_per_hour=1000,
        constraint="size(params.to) <= 50",
    )
    GrantFactory(agent=agent, action_type=payment_action)
    return agent


@pytest.fixture
def agent_key(agent):
    return agent_key_issue(agent=agent).secret


@pytest.fixture
def api(agent_key):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {agent_key}")
    return client


@pytest.fixture
def email_body():
    return {
        "action": "email.send",
        "params": {"to": ["lead@example.com"], "subject": "Pricing", "body": "Hi"},
        "reasoning": "The prospect asked for pricing.",
        "evidence": {"signal": "reply"},
        "confidence": 0.8,
    }
