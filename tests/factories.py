import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from agents import crypto
from agents.models import ActionType, Agent, BehaviourVersion, Grant
from agents.services import agent_key_issue
from aispm_site import roles
from approvals.models import Decision


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ["username"]
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("correct horse battery staple")

    @factory.post_generation
    def groups(self, create, extracted, **kwargs):
        for name in extracted or []:
            self.groups.add(Group.objects.get(name=name))


def reviewer(**kwargs):
    return UserFactory(groups=[roles.REVIEWERS], **kwargs)


def agent_admin(**kwargs):
    return UserFactory(groups=[roles.AGENT_ADMINS], **kwargs)


def auditor(**kwargs):
    return UserFactory(groups=[roles.AUDITORS], **kwargs)


class ActionTypeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ActionType
        django_get_or_create = ["key"]

    key = factory.Sequence(lambda n: f"thing{n}.do")
    name = factory.LazyAttribute(lambda a: a.key.replace(".", " ").title())
    summary_template = "Do {what}"
    params_schema = factory.LazyFunction(
        lambda: {
            "type": "object",
            "required": ["what"],
            "properties": {"what": {"type": "string"}},
        }
    )


class AgentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Agent
        django_get_or_create = ["slug"]

    slug = factory.Sequence(lambda n: f"agent-{n}")
    name = factory.LazyAttribute(lambda a: a.slug.replace("-", " ").title())


class BehaviourVersionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = BehaviourVersion

    agent = factory.SubFactory(AgentFactory)
    number = factory.Sequence(lambda n: n + 1)
    instructions = "Be careful."
    content_hash = factory.Sequence(lambda n: f"{n:064x}")


class GrantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Grant

    agent = factory.SubFactory(AgentFactory)
    action_type = factory.SubFactory(ActionTypeFactory)


class DecisionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Decision

    agent = factory.SubFactory(AgentFactory)
    action_type = factory.SubFactory(ActionTypeFactory)
    params = factory.LazyFunction(lambda: {"what": "the thing"})
    reasoning = "Because the evidence says so."
    summary = "Do the thing"
    policy_outcome = "review"


# Shared schemas and policies. A test that needs a variant builds it from these.


def email_schema(*, subject_max: int = 300, **extra_properties) -> dict:
    """The email.send params schema: to, subject and body, nothing else unless added."""
    return {
        "type": "object",
        "required": ["to", "subject", "body"],
        "additionalProperties": False,
        "properties": {
            "to": {"type": "array", "items": {"type": "string", "format": "email"}, "minItems": 1},
            "subject": {"type": "string", "maxLength": subject_max},
            "body": {"type": "string"},
            **extra_properties,
        },
    }


EMAIL_SCHEMA = email_schema()
PAYMENT_SCHEMA = {
    "type": "object",
    "required": ["amount", "to"],
    "properties": {"amount": {"type": "number", "exclusiveMinimum": 0}, "to": {"type": "string"}},
}
# The sdr-agent of the `agent` fixture: email and payments, a deny, two approvers.
SDR_POLICY = [
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

# Every decision goes to review.
REVIEW_ALL = [{"id": "all", "outcome": "review"}]


def agent_with_policy(*, policy: list, number: int = 1, **agent_fields) -> Agent:
    """An agent whose active behaviour version holds this policy."""
    agent = AgentFactory(**agent_fields)
    agent.active_behaviour = BehaviourVersionFactory(agent=agent, number=number, policy=policy)
    agent.save()
    return agent


def webhook_action(*, url: str, secret: str, key: str = "payment.transfer") -> ActionType:
    """An action type released to a signed webhook at url."""
    return ActionTypeFactory(
        key=key,
        connector_type=ActionType.Connector.WEBHOOK,
        connector_config={"url": url},
        connector_secret_encrypted=crypto.encrypt_secret(secret),
    )


def payer_world(*, url: str, secret: str, **agent_fields) -> dict:
    """The "payer" agent: every decision reviewed, a granted webhook payment, and a key."""
    agent = agent_with_policy(slug="payer", policy=REVIEW_ALL, **agent_fields)
    action = webhook_action(url=url, secret=secret)
    grant = GrantFactory(agent=agent, action_type=action)
    key = agent_key_issue(agent=agent).key
    return {"agent": agent, "action": action, "grant": grant, "key": key}
