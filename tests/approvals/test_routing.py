"""Escalation (frozen time), reassignment, snooze and out-of-office delegation."""

from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.models import Group
from django.utils import timezone

from agents.policy_rules import validate_policy
from approvals import routing, services
from approvals.capacity_tasks import escalate_decisions
from approvals.models import Decision, DecisionAssignment, Notification, ReviewerDelegation
from approvals.notifications.tasks import notify_new_decisions
from audit.models import AuditEvent
from tests.approvals.eager import eager_tasks  # noqa: F401 - autouse
from tests.factories import (
    ActionTypeFactory,
    AgentFactory,
    BehaviourVersionFactory,
    GrantFactory,
    UserFactory,
    auditor,
    reviewer,
)

pytestmark = pytest.mark.django_db
ESCALATING = [
    {
        "id": "big",
        "outcome": "review",
        "ttl": "8h",
        "escalate_after": "2h",
        "escalate_to": "Managers",
    }
]


@pytest.fixture
def managers():
    group = Group.objects.create(name="Managers")
    boss = reviewer(username="boss", email="boss@example.com")
    boss.groups.add(group)
    return group


@pytest.fixture
def world(managers):
    agent = AgentFactory(slug="esc", owner=UserFactory(username="owner"))
    agent.active_behaviour = BehaviourVersionFactory(agent=agent, number=1, policy=ESCALATING)
    agent.save()
    action = ActionTypeFactory(key="thing.do")
    GrantFactory(agent=agent, action_type=action)
    return {"agent": agent, "action": action}


def _decide(world):
    return services.decision_create(
        agent=world["agent"], action_type=world["action"], params={"what": "x"}, reasoning="r"
    )


def test_a_decision_still_pending_after_escalate_after_is_escalated_once_and_notified(
    world, managers, django_capture_on_commit_callbacks, mailoutbox
):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        decision = _decide(world)
    assert decision.escalate_at == start + timedelta(hours=2)
    with time_machine.travel(start + timedelta(hours=1, minutes=59), tick=False):
        assert escalate_decisions() == 0
    with time_machine.travel(start + timedelta(hours=2, minutes=1), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            assert escalate_decisions() == 1
        assert escalate_decisions() == 0
    decision.refresh_from_db()
    assert decision.escalated_at is not None
    assignment = DecisionAssignment.objects.get()
    assert (assignment.kind, assignment.group) == ("escalated", managers)
    assert AuditEvent.objects.filter(event="decision.escalated").count() == 1
    notification = Notification.objects.get(kind=Notification.Kind.ESCALATED)
    assert notification.recipient == "boss@example.com"
    assert [m.to for m in mailoutbox] == [["boss@example.com"]]
    assert "Escalated" in mailoutbox[0].subject


def test_a_decided_decision_is_never_escalated(world):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        decision = _decide(world)
        services.decision_approve(decision=decision, reviewer=reviewer())
    with time_machine.travel(start + timedelta(hours=3), tick=False):
        assert escalate_decisions() == 0


def test_the_inbox_marks_an_escalated_decision(client, world):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        decision = _decide(world)
    with time_machine.travel(start + timedelta(hours=3), tick=False):
        escalate_decisions()
        client.force_login(reviewer())
        page = client.get(f"/inbox/{decision.pk}/").content.decode()
    assert 'data-flag="escalated"' in page and "Escalated to Managers" in page


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"escalate_after": "2h"}, "escalate_to: is required"),
        ({"escalate_after": "soon", "escalate_to": "Managers"}, "escalate_after"),
        ({"escalate_after": "2h", "escalate_to": "Nobody"}, "no group named"),
        ({"escalate_after": "2h", "escalate_to": "a\x00b"}, "must name a group"),
        ({"escalate_after": "2h", "escalate_to": "Managers", "outcome": "deny"}, "review rules"),
    ],
)
def test_the_policy_refuses_bad_escalation(managers, rule, message):
    problems = validate_policy([{"id": "r", "outcome": "review", **rule}], irreversible_actions={})
    assert any(message in str(p) for p in problems), problems


def test_the_version_editor_refuses_an_unknown_escalation_group(client, world):
    from tests.factories import agent_admin

    client.force_login(agent_admin())
    response = client.post(
        f"/agents/{world['agent'].slug}/versions/new/",
        {
            "instructions": "x",
            "settings": "{}",
            "policy": "- id: r\n  outcome: review\n  escalate_after: 2h\n  escalate_to: Ghosts\n",
            "note": "n",
        },
    )
    assert response.status_code in (200, 400)
    assert "no group named" in response.content.decode()
    assert world["agent"].behaviour_versions.count() == 1


# --- reassignment ------------------------------------------------------------------


def test_a_reviewer_reassigns_to_a_named_reviewer_with_a_note(
    client, world, mailoutbox, django_capture_on_commit_callbacks
):
    decision = _decide(world)
    me, colleague = reviewer(username="me"), reviewer(username="col", email="col@example.com")
    client.force_login(me)
    assert client.get(f"/inbox/{decision.pk}/reassign/").status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/inbox/{decision.pk}/reassign/", {"reviewer": "col", "note": "You know this vendor"}
        )
    assert response.status_code == 302
    assignment = DecisionAssignment.objects.get()
    assert (assignment.user, assignment.by, assignment.note) == (
        colleague,
        me,
        "You know this vendor",
    )
    assert AuditEvent.objects.get(event="decision.reassigned").data["to_user"] == "col"
    assert [m.to for m in mailoutbox] == [["col@example.com"]]


def test_reassigning_cannot_make_the_owner_or_a_non_reviewer_review(client, world):
    decision = _decide(world)
    UserFactory(username="outsider")
    client.force_login(reviewer())
    for target in ("owner", "outsider"):
        response = client.post(f"/inbox/{decision.pk}/reassign/", {"reviewer": target, "note": "x"})
        assert response.status_code == 400
    # The owner is in the choices only if a reviewer: give them the role and try again.
    world["agent"].owner.groups.add(Group.objects.get(name="Reviewers"))
    response = client.post(f"/inbox/{decision.pk}/reassign/", {"reviewer": "owner", "note": "x"})
    assert response.status_code == 400
    assert b"owns this agent" in response.content
    assert not DecisionAssignment.objects.exists()


def test_only_reviewers_reassign_or_snooze(client, world):
    decision = _decide(world)
    for path in (f"/inbox/{decision.pk}/reassign/", f"/inbox/{decision.pk}/snooze/"):
        assert client.post(path, {}).status_code == 302  # to login
        client.force_login(auditor())
        assert client.post(path, {}).status_code == 403
        client.logout()
    client.force_login(reviewer())
    assert client.put(f"/inbox/{decision.pk}/snooze/").status_code == 405


# --- snooze ---------------------------------------------------------------------------


def test_snooze_hides_a_decision_from_my_queue_only_until_then(client, world):
    decision = _decide(world)
    me, other = reviewer(username="me"), reviewer(username="other")
    client.force_login(me)
    response = client.post(f"/inbox/{decision.pk}/snooze/", {"hours": 2})
    assert response.status_code == 302
    assert str(decision.pk) not in client.get("/inbox/").content.decode()
    client.force_login(other)
    assert str(decision.pk) in client.get("/inbox/").content.decode()
    client.force_login(me)
    with time_machine.travel(timezone.now() + timedelta(hours=2, minutes=1)):
        assert str(decision.pk) in client.get("/inbox/").content.decode()
    assert AuditEvent.objects.filter(event="decision.snoozed").count() == 1


def test_snooze_never_goes_past_expiry(client, world):
    decision = _decide(world)  # expires in 8 hours
    client.force_login(reviewer())
    response = client.post(f"/inbox/{decision.pk}/snooze/", {"hours": 9})
    assert response.status_code == 400
    assert b"past its expiry" in response.content
    with pytest.raises(routing.RoutingRefused):
        routing.decision_snooze(
            decision=decision, user=reviewer(), until=decision.expires_at + timedelta(seconds=1)
        )


# --- out of office --------------------------------------------------------------------


def test_while_away_my_notifications_and_reassignments_reach_my_delegate(
    client, world, mailoutbox, django_capture_on_commit_callbacks
):
    from approvals.notifications import preference_save

    away = reviewer(username="away", email="away@example.com")
    stand_in = reviewer(username="standin", email="standin@example.com")
    preference_save(actor=away, user=away, channel="email", mode="immediate", min_risk="low")
    now = timezone.now()
    client.force_login(away)
    response = client.post(
        "/inbox/away/",
        {
            "delegate": "standin",
            "starts_at": (now - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M"),
            "ends_at": (now + timedelta(days=2)).strftime("%Y-%m-%d %H:%M"),
        },
    )
    assert response.status_code == 302
    decision = _decide(world)
    with django_capture_on_commit_callbacks(execute=True):
        notify_new_decisions()
    assert [m.to for m in mailoutbox] == [["standin@example.com"]]
    mailoutbox.clear()
    client.force_login(reviewer(username="third"))
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/inbox/{decision.pk}/reassign/", {"reviewer": "away", "note": "for you"})
    assert DecisionAssignment.objects.get().user == stand_in
    assert [m.to for m in mailoutbox] == [["standin@example.com"]]
    assert AuditEvent.objects.filter(event="reviewer.delegated").count() == 1


def test_delegation_keeps_separation_of_duties(world):
    owner = world["agent"].owner
    owner.groups.add(Group.objects.get(name="Reviewers"))
    colleague = reviewer(username="col")
    now = timezone.now()
    # The owner's delegate reviews as themselves; the owner still cannot.
    routing.delegation_create(
        user=colleague,
        delegate=owner,
        starts_at=now - timedelta(hours=1),
        ends_at=now + timedelta(days=1),
    )
    decision = _decide(world)
    Decision.objects.filter(pk=decision.pk).update(required_approvals=2)
    decision.refresh_from_db()
    with pytest.raises(services.ReviewNotAllowed):
        services.decision_approve(decision=decision, reviewer=owner)
    # Approving as a delegate does not count twice: N approvals still need N people.
    services.decision_approve(decision=decision, reviewer=colleague)
    with pytest.raises(services.ReviewNotAllowed):
        services.decision_approve(decision=decision, reviewer=colleague)
    decision.refresh_from_db()
    assert decision.is_pending


def test_a_delegation_to_oneself_or_a_non_reviewer_is_refused(world):
    me = reviewer(username="me")
    now = timezone.now()
    for delegate in (me, UserFactory(username="stranger")):
        with pytest.raises(routing.RoutingRefused):
            routing.delegation_create(
                user=me, delegate=delegate, starts_at=now, ends_at=now + timedelta(days=1)
            )
    assert not ReviewerDelegation.objects.exists()


def test_only_reviewers_set_out_of_office_and_only_their_own(client, world):
    assert client.get("/inbox/away/").status_code == 302
    client.force_login(auditor())
    assert client.get("/inbox/away/").status_code == 403
    now = timezone.now()
    mine = routing.delegation_create(
        user=reviewer(username="mine"),
        delegate=reviewer(username="d"),
        starts_at=now,
        ends_at=now + timedelta(days=1),
    )
    client.force_login(reviewer(username="someone-else"))
    assert client.post(f"/inbox/away/{mine.pk}/cancel/").status_code == 404
    assert client.get(f"/inbox/away/{mine.pk}/cancel/").status_code == 405
    mine.refresh_from_db()
    assert mine.cancelled_at is None
    client.force_login(mine.user)
    assert client.post(f"/inbox/away/{mine.pk}/cancel/").status_code == 302
    mine.refresh_from_db()
    assert mine.cancelled_at is not None
    assert AuditEvent.objects.filter(event="reviewer.delegation_cancelled").count() == 1


def test_apply_governance_takes_an_escalation_and_refuses_an_unknown_group(tmp_path, managers):
    import copy

    from tests.agents.test_apply_governance import CONFIG, apply, reject, write

    UserFactory(username="alice")
    config = copy.deepcopy(CONFIG)
    rule = config["agents"][0]["behaviour"]["policy"][0]
    rule.update(escalate_after="2h", escalate_to="Nobody")
    [problem] = [line for line in reject(write(tmp_path, config)) if "escalate_to" in line]
    assert "no group named 'Nobody'" in problem
    rule["escalate_to"] = "Managers"
    apply(write(tmp_path, config))
    from agents.models import Agent

    policy = Agent.objects.get(slug=config["agents"][0]["slug"]).active_behaviour.policy
    assert policy[0]["escalate_to"] == "Managers"
