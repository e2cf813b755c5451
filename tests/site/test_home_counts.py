"""The home page says what waits for the user in each of their roles."""

import pytest

from agents.services import alert_raise
from approvals.services import decision_approve
from tests.factories import AgentFactory, DecisionFactory, UserFactory, agent_admin, auditor
from tests.factories import reviewer as make_reviewer

pytestmark = pytest.mark.django_db


def test_a_reviewer_sees_their_queue_and_what_waits_for_others(client):
    rita = make_reviewer(username="rita")
    mine = AgentFactory(slug="mine", owner=rita)
    DecisionFactory.create_batch(3)
    DecisionFactory(agent=mine)  # her own agent: someone else reviews it
    approved = DecisionFactory(required_approvals=2)
    decision_approve(decision=approved, reviewer=rita)
    client.force_login(rita)
    html = client.get("/").content.decode()
    assert "3 waiting for your review · 2 waiting for others" in html


def test_what_a_reviewer_snoozed_counts_apart_from_their_queue(client):
    from datetime import timedelta

    from django.utils import timezone

    from approvals.routing import decision_snooze

    rita = make_reviewer(username="rita")
    first, *_rest = DecisionFactory.create_batch(3)
    decision_snooze(decision=first, user=rita, until=timezone.now() + timedelta(minutes=30))
    client.force_login(rita)
    html = client.get("/").content.decode()
    assert "2 waiting for your review · 1 snoozed" in html


def test_an_agent_admin_sees_the_open_alerts(client):
    alert_raise(kind="test", severity="high", message="Something odd", agent=AgentFactory())
    client.force_login(agent_admin(username="ada"))
    html = client.get("/").content.decode()
    assert "1 open alert" in html
    assert "waiting for your review" not in html


def test_an_auditor_sees_no_counts_for_roles_they_do_not_hold(client):
    DecisionFactory()
    client.force_login(auditor(username="audrey"))
    html = client.get("/").content.decode()
    assert "waiting for your review" not in html and "open alert" not in html


def test_a_user_without_a_role_sees_no_counts(client):
    client.force_login(UserFactory(username="nobody"))
    assert "waiting" not in client.get("/").content.decode()
