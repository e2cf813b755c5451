"""A reviewer's own snoozes: listed with their end, undone one at a time (issue 17)."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from approvals import routing, services
from approvals.models import DecisionSnooze
from audit.models import AuditEvent
from tests.factories import (
    ActionTypeFactory,
    GrantFactory,
    UserFactory,
    agent_admin,
    agent_with_policy,
    auditor,
    reviewer,
)

pytestmark = pytest.mark.django_db
POLICY = [{"id": "all", "outcome": "review", "ttl": "8h", "risk": "medium"}]


@pytest.fixture
def world():
    agent = agent_with_policy(slug="snz", owner=UserFactory(username="owner"), policy=POLICY)
    action = ActionTypeFactory(key="thing.do", summary_template="Do {what}")
    GrantFactory(agent=agent, action_type=action)
    return {"agent": agent, "action": action}


def _decide(world, what="x"):
    return services.decision_create(
        agent=world["agent"], action_type=world["action"], params={"what": what}, reasoning="r"
    )


def _snooze(decision, user, hours=2):
    return routing.decision_snooze(
        decision=decision, user=user, until=timezone.now() + timedelta(hours=hours)
    )


def test_the_snoozed_page_lists_my_active_snoozes_with_their_end(client, world):
    me, other = reviewer(username="me"), reviewer(username="other")
    mine, theirs, ended = _decide(world, "mine"), _decide(world, "theirs"), _decide(world, "ended")
    snooze = _snooze(mine, me)
    _snooze(theirs, other)
    with time_machine.travel(timezone.now() - timedelta(hours=3)):
        _snooze(ended, me, hours=1)  # over two hours ago
    client.force_login(me)
    response = client.get("/inbox/snoozed/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "Do mine" in page and f"/inbox/{mine.pk}/" in page
    assert "Do theirs" not in page and "Do ended" not in page
    assert f"{snooze.until:%Y-%m-%d %H:%M}" in page
    assert f'action="/inbox/{mine.pk}/unsnooze/"' in page
    assert 'name="csrfmiddlewaretoken"' in page


def test_a_decided_decision_leaves_the_snoozed_page(client, world):
    me = reviewer(username="me")
    decision = _decide(world, "done")
    _snooze(decision, me)
    services.decision_approve(decision=decision, reviewer=reviewer(username="quick"))
    client.force_login(me)
    assert "Do done" not in client.get("/inbox/snoozed/").content.decode()


def test_the_inbox_tabs_count_my_snoozes_and_my_queue_leaves_them_out(client, world):
    me = reviewer(username="me")
    snoozed, waiting = _decide(world, "later"), _decide(world, "now")
    _snooze(snoozed, me)
    client.force_login(me)
    response = client.get("/inbox/")
    assert response.context["queue_counts"]["snoozed"] == 1
    assert response.context["queue_counts"]["mine"] == 1
    assert [d.pk for d in response.context["page"].decisions] == [waiting.pk]
    page = response.content.decode()
    assert 'href="/inbox/snoozed/"' in page
    assert 'data-queue="snoozed"' in page


def test_unsnooze_puts_the_decision_back_in_my_queue_and_is_audited(client, world):
    me = reviewer(username="me")
    decision = _decide(world)
    snooze = _snooze(decision, me)
    client.force_login(me)
    assert decision.pk not in {d.pk for d in client.get("/inbox/").context["page"].decisions}
    response = client.post(f"/inbox/{decision.pk}/unsnooze/")
    assert response.status_code == 302
    assert response["Location"] == "/inbox/snoozed/"
    assert not DecisionSnooze.objects.exists()
    assert decision.pk in {d.pk for d in client.get("/inbox/").context["page"].decisions}
    assert "Do x" not in client.get("/inbox/snoozed/").content.decode()
    event = AuditEvent.objects.get(event="decision.unsnoozed")
    assert event.actor_user == me
    assert event.data["until"] == snooze.until.isoformat()
    assert event.target_id == str(decision.pk)


def test_another_reviewer_cannot_undo_my_snooze(client, world):
    me = reviewer(username="me")
    decision = _decide(world)
    _snooze(decision, me)
    client.force_login(reviewer(username="other"))
    assert client.post(f"/inbox/{decision.pk}/unsnooze/").status_code == 404
    assert DecisionSnooze.objects.filter(user=me).count() == 1
    assert not AuditEvent.objects.filter(event="decision.unsnoozed").exists()


@pytest.mark.parametrize("make", [auditor, agent_admin])
def test_people_who_do_not_review_cannot_see_or_undo_snoozes(client, world, make):
    me = reviewer(username="me")
    decision = _decide(world)
    _snooze(decision, me)
    client.force_login(make(username="outsider"))
    assert client.get("/inbox/snoozed/").status_code == 403
    assert client.post(f"/inbox/{decision.pk}/unsnooze/").status_code == 403
    assert DecisionSnooze.objects.count() == 1


def test_anonymous_users_are_sent_to_log_in(client, world):
    decision = _decide(world)
    _snooze(decision, reviewer(username="me"))
    for response in (
        client.get("/inbox/snoozed/"),
        client.post(f"/inbox/{decision.pk}/unsnooze/"),
    ):
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")
    assert DecisionSnooze.objects.count() == 1


def test_unsnooze_is_post_only(client, world):
    me = reviewer(username="me")
    decision = _decide(world)
    _snooze(decision, me)
    client.force_login(me)
    assert client.get(f"/inbox/{decision.pk}/unsnooze/").status_code == 405
    assert client.post("/inbox/snoozed/").status_code == 405
    assert DecisionSnooze.objects.count() == 1


def test_unsnooze_needs_the_csrf_token(world):
    from django.test import Client

    me = reviewer(username="me")
    decision = _decide(world)
    _snooze(decision, me)
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(me)
    assert strict.post(f"/inbox/{decision.pk}/unsnooze/").status_code == 403
    assert DecisionSnooze.objects.count() == 1


def test_an_ended_snooze_cannot_be_undone(client, world):
    me = reviewer(username="me")
    decision = _decide(world)
    _snooze(decision, me, hours=1)
    client.force_login(me)
    with time_machine.travel(timezone.now() + timedelta(hours=1, minutes=1)):
        assert client.post(f"/inbox/{decision.pk}/unsnooze/").status_code == 404
        with pytest.raises(routing.RoutingRefused):
            routing.decision_unsnooze(decision=decision, user=me)
    assert not AuditEvent.objects.filter(event="decision.unsnoozed").exists()


def test_agent_written_text_on_the_snoozed_page_stays_inert(client, world):
    me = reviewer(username="me")
    hostile = '<script>alert(1)</script> <b hx-get="/x">=cmd|</b>\r\n+SUM(1) @x -1'
    decision = _decide(world, hostile)
    _snooze(decision, me)
    client.force_login(me)
    page = client.get("/inbox/snoozed/").content.decode()
    assert "<script>alert(1)" not in page
    assert 'hx-get="/x"' not in page
    assert "&lt;script&gt;" in page
    # The summary sits in an hx-disable container, like every agent-written value.
    summary_at = page.index("&lt;script&gt;")
    assert page.rfind("hx-disable", 0, summary_at) > page.rfind("<li", 0, summary_at)
