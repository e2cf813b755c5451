"""Every refusal of an agents service is one exception type, AgentsRefusal, whose
message the screens show as a form error; a refused change writes nothing."""

import pytest
from django.utils import timezone

from agents import services
from agents.models import Agent, AgentKey, GlobalStop, Grant
from agents.services import AgentsRefusal
from audit.models import AuditEvent
from tests.factories import ActionTypeFactory, AgentFactory, agent_admin

pytestmark = pytest.mark.django_db


@pytest.fixture
def agent():
    return AgentFactory(slug="sdr-agent")


def refusals(agent):
    action = ActionTypeFactory(key="email.send", irreversible=True)
    revoked = services.agent_key_issue(agent=agent).key
    AgentKey.objects.filter(pk=revoked.pk).update(revoked_at=timezone.now())
    return {
        "a bad constraint": lambda: services.grant_apply(
            agent=agent, action_type=action, constraint="params.to ==="
        ),
        "a zero limit": lambda: services.grant_apply(
            agent=agent, action_type=action, limit_per_hour=0
        ),
        "a suspension without a reason": lambda: services.agent_suspend(agent=agent, reason=" "),
        "a global stop without a reason": lambda: services.global_stop_set(
            engaged=True, reason="", actor=None
        ),
        "rotating a revoked key": lambda: services.agent_key_rotate(key=revoked),
        "a policy that allows an irreversible action": lambda: services.behaviour_version_create(
            agent=agent, policy=[{"id": "yes", "action": "email.send", "outcome": "allow"}]
        ),
        "an irreversible action allowed by default": lambda: services.action_type_apply(
            key="payment.send",
            name="Pay",
            params_schema={},
            irreversible=True,
            default_outcome="allow",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "a bad constraint",
        "a zero limit",
        "a suspension without a reason",
        "a global stop without a reason",
        "rotating a revoked key",
        "a policy that allows an irreversible action",
        "an irreversible action allowed by default",
    ],
)
def test_each_refusal_is_an_agents_refusal_and_writes_nothing(agent, case):
    attempt = refusals(agent)[case]
    events_before = AuditEvent.objects.count()
    keys_before = AgentKey.objects.count()

    with pytest.raises(AgentsRefusal) as refused:
        attempt()

    assert str(refused.value)
    assert AuditEvent.objects.count() == events_before
    assert AgentKey.objects.count() == keys_before
    assert not Grant.objects.exists()
    assert not GlobalStop.objects.filter(engaged=True).exists()
    assert Agent.objects.get(pk=agent.pk).status == Agent.Status.ACTIVE


def test_a_refused_rotation_is_shown_as_a_form_error(client, agent, monkeypatch):
    key = services.agent_key_issue(agent=agent).key
    client.force_login(agent_admin(username="ada"))

    def refuse(**kwargs):
        raise AgentsRefusal("This key was revoked a moment ago.")

    monkeypatch.setattr(services, "agent_key_rotate", refuse)
    response = client.post(
        f"/security/agents/{agent.slug}/keys/{key.pk}/rotate/", {"overlap_hours": 1}
    )

    assert response.status_code == 409
    assert "This key was revoked a moment ago." in response.content.decode()


def test_a_bug_in_a_service_is_not_shown_as_a_form_error(client, agent, monkeypatch):
    key = services.agent_key_issue(agent=agent).key
    client.force_login(agent_admin(username="ada"))

    def broken(**kwargs):
        raise ValueError("not a refusal")

    monkeypatch.setattr(services, "agent_key_rotate", broken)
    with pytest.raises(ValueError, match="not a refusal"):
        client.post(f"/security/agents/{agent.slug}/keys/{key.pk}/rotate/", {"overlap_hours": 1})


def test_a_refused_behaviour_version_is_shown_on_the_policy_field(client, agent, monkeypatch):
    client.force_login(agent_admin(username="ada"))

    def refuse(**kwargs):
        raise AgentsRefusal("email.send became irreversible; allow is not permitted.")

    monkeypatch.setattr(services, "behaviour_version_create", refuse)
    response = client.post(
        f"/agents/{agent.slug}/versions/new/",
        {"instructions": "", "settings": "{}", "policy": "[]", "note": "Try."},
    )

    assert response.status_code == 400
    assert "email.send became irreversible" in response.content.decode()
    assert not agent.behaviour_versions.exists()
