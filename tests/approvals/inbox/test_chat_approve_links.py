"""Signed "Approve" links from chat messages: a session, a POST and the inbox's checks."""

import pytest
from django.contrib.auth.models import Group

from approvals import services
from approvals.models import Decision, Review
from approvals.notifications import links
from audit.models import AuditEvent
from tests.approvals.eager import eager_tasks  # noqa: F401 - autouse
from tests.factories import auditor, reviewer


@pytest.fixture
def decision(agent):
    return services.decision_create(
        agent=agent,
        action_type=agent.grants.get(action_type__key="email.send").action_type,
        params={"to": ["lead@example.com"], "subject": "Pricing", "body": "Hi"},
        reasoning="Asked for pricing.",
    )


def test_opening_the_link_shows_the_decision_and_approves_nothing(client, decision):
    client.force_login(reviewer())
    response = client.get(links.approve_path(decision))
    assert response.status_code == 200
    assert b"Approve this decision?" in response.content
    decision.refresh_from_db()
    assert decision.status == Decision.Status.PENDING
    assert not Review.objects.exists()


def test_posting_the_link_approves_as_the_signed_in_reviewer_and_is_audited(client, decision):
    person = reviewer()
    client.force_login(person)
    response = client.post(links.approve_path(decision), {"comment": "from chat"})
    assert response.status_code == 302
    decision.refresh_from_db()
    assert decision.status in services.APPROVED_STATES
    assert decision.reviews.get().reviewer == person
    assert AuditEvent.objects.filter(event="decision.approved", target_id=str(decision.pk)).exists()


def test_an_anonymous_click_goes_to_login_and_approves_nothing(client, decision):
    for method in ("get", "post"):
        response = getattr(client, method)(links.approve_path(decision))
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    decision.refresh_from_db()
    assert decision.is_pending


def test_someone_without_the_review_role_cannot_use_a_link(client, decision):
    client.force_login(auditor())
    assert client.post(links.approve_path(decision)).status_code == 403
    decision.refresh_from_db()
    assert decision.is_pending


def test_the_agents_owner_cannot_approve_through_a_link(client, decision):
    owner = decision.agent.owner
    owner.groups.add(Group.objects.get(name="Reviewers"))
    client.force_login(owner)
    client.post(links.approve_path(decision))
    decision.refresh_from_db()
    assert decision.is_pending and not Review.objects.exists()


def test_a_link_cannot_be_pointed_at_another_decision_or_tampered_with(client, agent, decision):
    other = services.decision_create(
        agent=agent,
        action_type=decision.action_type,
        params={"to": ["ceo@example.com"], "subject": "Wire", "body": "Now"},
        reasoning="x",
    )
    token = links.approve_path(decision).rstrip("/").rsplit("/", 1)[1]
    client.force_login(reviewer())
    assert client.post(f"/inbox/{other.pk}/chat-approve/{token}/").status_code == 404
    assert client.post(f"/inbox/{decision.pk}/chat-approve/{token[:-2]}xx/").status_code == 404
    other.refresh_from_db()
    decision.refresh_from_db()
    assert other.is_pending and decision.is_pending


def test_a_link_approves_nothing_once_the_params_changed(client, agent, decision):
    path = links.approve_path(decision)
    editor = reviewer(username="editor")
    decision.required_approvals = 2
    Decision.objects.filter(pk=decision.pk).update(required_approvals=2)
    services.decision_approve(
        decision=decision,
        reviewer=editor,
        approved_params={"to": ["lead@example.com"], "subject": "Pricing v2", "body": "Hi"},
    )
    client.force_login(reviewer())
    response = client.post(path, follow=True)
    assert b"The params changed since the message was sent" in response.content
    decision.refresh_from_db()
    assert decision.is_pending
    assert decision.reviews.count() == 1


def test_the_link_refuses_other_methods(client, decision):
    client.force_login(reviewer())
    assert client.put(links.approve_path(decision)).status_code == 405
