"""A governed agent for the edit-gate tests (service and browser): a refund capped by its
grant, payments that need two approvers over 1000, and email limited to known domains,
with a deny rule, new-destination and split-transaction anomaly rules."""

from dataclasses import dataclass

from agents.models import ActionType, Agent, AgentKey, SeenDestination
from agents.services import agent_key_issue, grant_apply
from approvals import services
from approvals.models import Decision
from tests.factories import (
    ActionTypeFactory,
    AgentFactory,
    BehaviourVersionFactory,
    UserFactory,
    email_schema,
)

REFUND_SCHEMA = {
    "type": "object",
    "required": ["amount", "order"],
    "additionalProperties": False,
    "properties": {
        "amount": {"type": "number", "exclusiveMinimum": 0},
        "order": {"type": "string", "maxLength": 40},
    },
}
PAYMENT_SCHEMA = {
    "type": "object",
    "required": ["amount", "iban"],
    "additionalProperties": False,
    "properties": {
        "amount": {"type": "number", "exclusiveMinimum": 0},
        "iban": {"type": "string", "pattern": "^[A-Z]{2}[0-9]{2}[A-Z0-9]{8,30}$"},
    },
}
EMAIL_SCHEMA = email_schema(subject_max=120)
POLICY = [
    {
        "id": "never-email-rivals",
        "action": "email.send",
        "when": "params.to.exists(t, t.endsWith('@rival.example'))",
        "outcome": "deny",
        "reason": "Never email a rival",
    },
    {"id": "outbound-email", "action": "email.send", "outcome": "review", "risk": "medium"},
    {"id": "refunds", "action": "refund.issue", "outcome": "review", "risk": "medium"},
    {
        "id": "two-approvers-over-1000",
        "action": "payment.transfer",
        "when": "params.amount > 1000",
        "outcome": "review",
        "approvals": 2,
        "risk": "high",
        "reason": "Transfers over 1000 need two approvers",
    },
    {"id": "payments", "action": "payment.transfer", "outcome": "review", "risk": "medium"},
]
ANOMALY_RULES = [
    {"rule": "new_destination", "params": ["to"], "action": "force_review"},
    {
        "rule": "split_transactions",
        "for_action": "payment.transfer",
        "param": "amount",
        "threshold": 1000,
        "window": "1h",
        "action": "alert",
    },
]
REFUND_CAP = "params.amount <= 500"
PAYMENT_CAP = "params.amount <= 50000"
EMAIL_DOMAINS = (
    "params.to.all(t, t.endsWith('@suppliers.example') || t.endsWith('@partners.example')"
    " || t.endsWith('@rival.example'))"
)
IBAN = "DE89370400440532013000"
NEW_IBAN = "GB29NWBK60161331926819"


@dataclass
class World:
    agent: Agent
    key: AgentKey
    refund: ActionType
    payment: ActionType
    email: ActionType

    def submit(self, action: ActionType, params: dict) -> Decision:
        return services.decision_submit(
            key=self.key,
            action=action.key,
            params=params,
            reasoning="The customer asked for it.",
            evidence={"ticket": "T-1"},
            confidence=0.9,
        ).decision

    def refund_of(self, amount) -> Decision:
        return self.submit(self.refund, {"amount": amount, "order": "A-1001"})

    def payment_of(self, amount, iban: str = IBAN) -> Decision:
        return self.submit(self.payment, {"amount": amount, "iban": iban})

    def email_to(self, *to: str) -> Decision:
        return self.submit(self.email, {"to": list(to), "subject": "Order", "body": "Hello"})


def build_world() -> World:
    agent = AgentFactory(
        slug="ops-agent",
        name="Ops agent",
        owner=UserFactory(username="owen"),
        anomaly_rules=ANOMALY_RULES,
    )
    agent.active_behaviour = BehaviourVersionFactory(agent=agent, number=1, policy=POLICY)
    agent.save()
    refund = ActionTypeFactory(
        key="refund.issue",
        name="Issue refund",
        summary_template="Refund {amount} on {order}",
        params_schema=REFUND_SCHEMA,
    )
    payment = ActionTypeFactory(
        key="payment.transfer",
        name="Transfer money",
        summary_template="Pay {amount} to {iban}",
        params_schema=PAYMENT_SCHEMA,
        irreversible=True,
    )
    email = ActionTypeFactory(
        key="email.send",
        name="Send email",
        summary_template="Email to {to}: {subject}",
        params_schema=EMAIL_SCHEMA,
        irreversible=True,
    )
    grant_apply(agent=agent, action_type=refund, constraint=REFUND_CAP)
    grant_apply(agent=agent, action_type=payment, constraint=PAYMENT_CAP)
    grant_apply(agent=agent, action_type=email, constraint=EMAIL_DOMAINS)
    SeenDestination.objects.create(agent=agent, value="suppliers.example")
    agent.refresh_from_db()
    key = agent_key_issue(agent=agent).key
    return World(agent=agent, key=key, refund=refund, payment=payment, email=email)
