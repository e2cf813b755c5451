"""Canary decisions: look real, are never released by any path, and stay out of metrics."""

import random

import pytest
from django.utils import timezone

from agents import crypto
from agents.models import Alert
from agents.services import agent_key_issue, agent_suspend
from approvals import canaries, selectors, services, tasks
from approvals.models import CanaryTemplate, Decision
from approvals.notifications import links
from audit.models import AuditEvent
from tests.approvals.eager import eager_tasks  # noqa: F401 - autouse
from tests.factories import (
    ActionTypeFactory,
    AgentFactory,
    BehaviourVersionFactory,
    GrantFactory,
    UserFactory,
    agent_admin,
    auditor,
    reviewer,
)
from tests.receiver import Receiver

pytestmark = pytest.mark.django_db
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
IBAN = {"amount": 9800, "to": "XX00 UNKNOWN 0000 0000"}


@pytest.fixture
def receiver(settings):
    settings.AISPM_ALLOW_PRIVATE_TARGETS = True
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def world(receiver):
    agent = AgentFactory(
        slug="payer", owner=UserFactory(username="owner"), callback_url=receiver.url + "/cb"
    )
    agent.callback_secret_encrypted = crypto.encrypt_secret(SECRET)
    agent.active_behaviour = BehaviourVersionFactory(
        agent=agent,
        number=1,
        policy=[{"id": "all", "outcome": "review", "risk": "low", "bulk": True}],
    )
    agent.save()
    action = ActionTypeFactory(
        key="payment.transfer",
        summary_template="Pay {amount} to {to}",
        params_schema={
            "type": "object",
            "required": ["amount", "to"],
            "properties": {"amount": {"type": "number"}, "to": {"type": "string"}},
        },
        connector_type="webhook",
        connector_config={"url": receiver.url},
        connector_secret_encrypted=crypto.encrypt_secret(SECRET),
    )
    GrantFactory(agent=agent, action_type=action)
    admin = agent_admin()
    template = canaries.canary_template_save(
        actor=admin,
        agent=agent,
        action_type=action,
        params=IBAN,
        reasoning="The supplier changed bank details by email.",
        rate_percent=50,
    )
    return {"agent": agent, "action": action, "template": template, "admin": admin}


def _canary(world) -> Decision:
    return canaries.canary_insert(template=world["template"])


def _assert_never_released(decision, receiver):
    decision.refresh_from_db()
    assert decision.status == Decision.Status.BLOCKED
    assert decision.status_reason == canaries.BLOCK_REASON
    assert not decision.attempts.exists()  # the connector was never called
    assert receiver.requests == []  # neither the connector nor the agent's callback
    alert = Alert.objects.get(kind="canary_approved")
    assert alert.evidence["decision"] == str(decision.pk)
    assert "blocked at release" in alert.message


def test_a_canary_looks_like_any_pending_decision_in_the_inbox(client, world):
    decision = _canary(world)
    assert decision.is_pending and decision.canary
    client.force_login(reviewer())
    page = client.get(f"/inbox/{decision.pk}/").content.decode().lower()
    assert "pay 9800 to xx00 unknown" in page
    assert "canary" not in page
    assert "canary" not in client.get("/inbox/").content.decode().lower()


def test_a_canary_approved_in_the_inbox_is_blocked_at_release_with_an_alert(
    client, world, receiver, django_capture_on_commit_callbacks
):
    decision = _canary(world)
    person = reviewer(username="hasty")
    client.force_login(person)
    shown = services.params_fingerprint(services.effective_params(decision))
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/inbox/{decision.pk}/approve/", {"params_hash": shown})
    _assert_never_released(decision, receiver)
    assert "hasty" in Alert.objects.get(kind="canary_approved").message


def test_a_canary_approved_in_bulk_is_never_released(
    world, receiver, django_capture_on_commit_callbacks
):
    decision = _canary(world)
    assert services.is_bulk_approvable(decision)
    with django_capture_on_commit_callbacks(execute=True):
        result = services.decision_bulk_approve(decisions=[decision], reviewer=reviewer())
    assert result.approved
    _assert_never_released(decision, receiver)


def test_a_canary_approved_from_a_chat_link_is_never_released(
    client, world, receiver, django_capture_on_commit_callbacks
):
    decision = _canary(world)
    client.force_login(reviewer())
    with django_capture_on_commit_callbacks(execute=True):
        client.post(links.approve_path(decision))
    _assert_never_released(decision, receiver)


def test_the_release_recheck_and_the_sweeper_refuse_a_canary(world, receiver):
    decision = _canary(world)
    # However it came to be approved, the release task itself refuses it.
    Decision.objects.filter(pk=decision.pk).update(
        status=Decision.Status.APPROVED,
        approval=Decision.Approval.HUMAN,
        decided_at=timezone.now() - timezone.timedelta(hours=1),
    )
    assert tasks.sweep_releases() == 1
    _assert_never_released(decision, receiver)


def test_a_rejected_canary_counts_as_caught_and_tells_the_agent_nothing(world, receiver):
    decision = _canary(world)
    services.decision_reject(decision=decision, reviewer=reviewer(), reason="Unknown IBAN")
    decision.refresh_from_db()
    assert decision.status == Decision.Status.REJECTED
    assert receiver.requests == []


def test_canaries_stay_out_of_the_agent_api_feedback_metrics_and_rate_limits(world):
    agent = world["agent"]
    decision = _canary(world)
    services.decision_reject(decision=decision, reviewer=reviewer(), reason="Unknown IBAN")
    assert not selectors.decisions_for_agent(agent=agent).exists()
    assert selectors.decision_for_agent(agent=agent, decision_id=decision.pk) is None
    assert selectors.feedback_for_agent(agent=agent) == []
    assert not selectors.feedback_rows(agent=agent).exists()
    assert selectors.version_metrics(agent=agent) == []
    assert selectors.agent_record(decision=decision)["rejected"] == 0


def test_the_agent_api_does_not_show_a_canary(world):
    from rest_framework.test import APIClient

    decision = _canary(world)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {agent_key_issue(agent=world['agent']).secret}")
    assert api.get(f"/api/v1/decisions/{decision.pk}/").status_code == 404
    assert api.get("/api/v1/decisions/").json()["results"] == []


def test_auditors_see_the_canary_in_the_trail(client, world):
    decision = _canary(world)
    assert AuditEvent.objects.filter(event="canary.inserted", target_id=str(decision.pk)).exists()
    client.force_login(auditor())
    page = client.get(f"/audit/decisions/{decision.pk}/").content.decode()
    assert "canary.inserted" in page


def test_beat_inserts_canaries_at_the_templates_rate_for_active_agents_only(world):
    inserted = canaries.canaries_insert_due(rng=random.Random(1))
    rolls = [random.Random(1).randrange(100)]
    assert len(inserted) == (1 if rolls[0] < 50 else 0)
    CanaryTemplate.objects.update(rate_percent=100)
    assert len(canaries.canaries_insert_due()) == 1
    agent_suspend(agent=world["agent"], actor=world["admin"], reason="Checking.")
    assert canaries.canaries_insert_due() == []
    assert AuditEvent.objects.filter(event="canary.template_saved").count() == 1


def test_a_template_must_fit_the_agents_grant_and_schema(world):
    other = ActionTypeFactory(key="email.send")
    with pytest.raises(canaries.CanaryRefused):
        canaries.canary_template_save(
            actor=world["admin"], agent=world["agent"], action_type=other, params={}, reasoning="x"
        )
    with pytest.raises(canaries.CanaryRefused):
        canaries.canary_template_save(
            actor=world["admin"],
            agent=world["agent"],
            action_type=world["action"],
            params={"amount": "lots"},
            reasoning="x",
        )


# --- the agent admin's screen ---------------------------------------------------------


def test_an_agent_admin_opts_an_agent_in_and_turns_a_template_off(client, world):
    client.force_login(world["admin"])
    url = f"/agents/{world['agent'].slug}/canaries/"
    assert client.get(url).status_code == 200
    response = client.post(
        url,
        {
            "action": "payment.transfer",
            "params": '{"amount": 50000, "to": "ZZ99 NEVER SEEN"}',
            "reasoning": "Urgent, the CEO asked.",
            "rate_percent": 10,
        },
    )
    assert response.status_code == 302
    new = CanaryTemplate.objects.get(params__to="ZZ99 NEVER SEEN")
    response = client.post(f"{url}{new.pk}/toggle/", {})
    assert response.status_code == 302
    new.refresh_from_db()
    assert new.enabled is False
    assert AuditEvent.objects.filter(event="canary.template_saved").count() == 3


def test_the_canary_screen_refuses_params_outside_the_schema(client, world):
    client.force_login(world["admin"])
    url = f"/agents/{world['agent'].slug}/canaries/"
    bad = {"action": "payment.transfer", "params": '{"amount": "x"}', "reasoning": "r"}
    assert client.post(url, {**bad, "rate_percent": 5}).status_code == 400
    assert client.post(url, {**bad, "params": "[1]", "rate_percent": 5}).status_code == 400
    assert CanaryTemplate.objects.count() == 1


@pytest.mark.parametrize("method", ["get", "post"])
def test_reviewers_and_auditors_cannot_see_or_define_canaries(client, world, method):
    url = f"/agents/{world['agent'].slug}/canaries/"
    assert getattr(client, method)(url).status_code == 302
    for person in (reviewer(), auditor()):
        client.force_login(person)
        assert getattr(client, method)(url).status_code == 403
        assert client.post(f"{url}{world['template'].pk}/toggle/").status_code == 403
    world["template"].refresh_from_db()
    assert world["template"].enabled


def test_a_pending_canary_is_not_counted_on_the_agents_list(client, world):
    _canary(world)
    client.force_login(world["admin"])
    page = client.get("/agents/")
    assert page.status_code == 200
    assert page.context["agents"].get(pk=world["agent"].pk).pending == 0
