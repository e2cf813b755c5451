"""One answer to "may this reviewer act on this decision?", for the services and the inbox."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from approvals import services
from tests.factories import (
    ActionTypeFactory,
    AgentFactory,
    BehaviourVersionFactory,
    UserFactory,
    reviewer,
)

pytestmark = pytest.mark.django_db

POLICY = [{"id": "mail", "action": "note.add", "outcome": "review", "risk": "low", "ttl": "1h"}]


@pytest.fixture
def pending():
    owner = UserFactory(username="owner")
    agent = AgentFactory(slug="sdr", owner=owner)
    agent.active_behaviour = BehaviourVersionFactory(agent=agent, number=1, policy=POLICY)
    agent.save()
    action = ActionTypeFactory(key="note.add", summary_template="Note", params_schema={})
    return services.decision_create(
        agent=agent, action_type=action, params={"text": "hi"}, reasoning="asked"
    )


def refused_by_the_service(decision, user) -> str:
    with pytest.raises(services.ApprovalRefused) as refusal:
        services.decision_approve(decision=decision, reviewer=user)
    return str(refusal.value)


def test_an_eligible_reviewer_is_not_refused(pending):
    assert services.review_refusal(pending, reviewer()) is None


def test_the_owner_is_refused_with_the_services_words(pending):
    owner = pending.agent.owner
    assert services.review_refusal(pending, owner) == refused_by_the_service(pending, owner)
    assert "own this agent" in services.review_refusal(pending, owner)


def test_a_second_review_by_the_same_person_is_refused(pending):
    rita = reviewer()
    services.decision_reject(decision=pending, reviewer=rita, reason="No")
    pending.refresh_from_db()
    assert services.review_refusal(pending, rita) == refused_by_the_service(pending, rita)


def test_a_suspended_agents_decision_is_refused(pending):
    pending.agent.status = pending.agent.Status.SUSPENDED
    pending.agent.save()
    rita = reviewer()
    assert "frozen" in services.review_refusal(pending, rita)
    assert services.review_refusal(pending, rita) == refused_by_the_service(pending, rita)


def test_a_decision_past_its_expiry_is_refused_before_the_sweep(pending):
    rita = reviewer()
    with time_machine.travel(timezone.now() + timedelta(hours=2)):
        assert services.review_refusal(pending, rita) == "This decision has expired."


def test_the_inbox_offers_no_verdict_on_a_decision_past_its_expiry(client, pending):
    rita = reviewer()
    client.force_login(rita)
    approve_url = f"/inbox/{pending.pk}/approve/"
    assert approve_url in client.get(f"/inbox/{pending.pk}/").content.decode()
    with time_machine.travel(timezone.now() + timedelta(hours=2)):
        html = client.get(f"/inbox/{pending.pk}/").content.decode()
    assert approve_url not in html


def test_the_inbox_offers_no_verdict_to_the_agents_owner(client, pending):
    client.force_login(pending.agent.owner)
    pending.agent.owner.groups.add(*reviewer().groups.all())
    html = client.get(f"/inbox/{pending.pk}/").content.decode()
    assert f"/inbox/{pending.pk}/approve/" not in html


def test_refusing_an_empty_rejection_reason_is_an_approval_refusal(pending):
    with pytest.raises(services.ApprovalRefused, match="reason is required"):
        services.decision_reject(decision=pending, reviewer=reviewer(), reason=" ")
