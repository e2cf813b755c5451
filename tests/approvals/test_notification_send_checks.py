"""What a send checks when it starts, not when its row was queued: the decision is
still pending, and the person it is for may still review it."""

import json

import pytest
from django.contrib.auth.models import Group

from approvals import services
from approvals.models import Notification
from approvals.notifications import preference_save
from approvals.notifications import tasks as notification_tasks
from audit.models import AuditEvent
from tests.approvals.eager import eager_tasks  # noqa: F401 - autouse
from tests.factories import UserFactory, reviewer
from tests.receiver import Receiver

pytestmark = pytest.mark.django_db


def _submit(agent, n):
    return services.decision_create(
        agent=agent,
        action_type=agent.grants.get(action_type__key="email.send").action_type,
        params={"to": ["lead@example.com"], "subject": f"Pricing {n}", "body": "Hi"},
        reasoning="The prospect asked.",
    )


def _fan_out(monkeypatch, django_capture_on_commit_callbacks) -> list[str]:
    """Run beat's sweep; return the notification ids it enqueued, unsent."""
    enqueued = []
    with monkeypatch.context() as patch:
        patch.setattr(notification_tasks.send_notification, "delay", enqueued.append)
        with django_capture_on_commit_callbacks(execute=True):
            notification_tasks.notify_new_decisions()
    return enqueued


@pytest.mark.parametrize("outcome", ["cancelled", "rejected"])
def test_a_decision_closed_between_fan_out_and_send_is_not_announced(
    agent, mailoutbox, monkeypatch, django_capture_on_commit_callbacks, outcome
):
    person = reviewer(username="rita", email="rita@example.com")
    preference_save(actor=person, user=person, channel="email", mode="immediate", min_risk="low")
    decision = _submit(agent, 0)
    enqueued = _fan_out(monkeypatch, django_capture_on_commit_callbacks)
    if outcome == "cancelled":
        services.decision_cancel(decision=decision, agent=agent)
    else:
        services.decision_reject(decision=decision, reviewer=reviewer(), reason="no")
    [notification_id] = enqueued
    notification_tasks.send_notification.delay(notification_id)
    assert mailoutbox == []
    assert Notification.objects.get(pk=notification_id).status != Notification.Status.QUEUED


def _refused(notification_id):
    notification = Notification.objects.get(pk=notification_id)
    assert notification.status == Notification.Status.FAILED
    assert notification.error == "the recipient may no longer review"
    event = AuditEvent.objects.get(event="notification.failed", target_id=str(notification_id))
    assert event.data["recipient"] == notification.recipient


@pytest.mark.parametrize("change", ["left the reviewers", "deactivated"])
def test_someone_who_may_no_longer_review_is_not_emailed_when_the_send_starts(
    agent, mailoutbox, monkeypatch, django_capture_on_commit_callbacks, change
):
    person = reviewer(username="rita", email="rita@example.com")
    preference_save(actor=person, user=person, channel="email", mode="immediate", min_risk="low")
    _submit(agent, 0)
    [notification_id] = _fan_out(monkeypatch, django_capture_on_commit_callbacks)
    if change == "deactivated":
        person.is_active = False
        person.save()
    else:
        person.groups.clear()
    assert notification_tasks.send_notification.delay(notification_id).get() == "failed"
    assert mailoutbox == []
    _refused(notification_id)


def test_a_group_email_reaches_only_the_members_who_may_still_review(
    agent, mailoutbox, monkeypatch, django_capture_on_commit_callbacks
):
    reviewers = Group.objects.get(name="Reviewers")
    stays = reviewer(username="stays", email="stays@example.com")
    leaves = reviewer(username="leaves", email="leaves@example.com")
    admin = UserFactory(is_superuser=True)
    preference_save(actor=admin, group=reviewers, channel="email", mode="immediate", min_risk="low")
    _submit(agent, 0)
    enqueued = _fan_out(monkeypatch, django_capture_on_commit_callbacks)
    assert len(enqueued) == 2
    leaves.groups.remove(reviewers)
    for notification_id in enqueued:
        notification_tasks.send_notification.delay(notification_id)
    assert [m.to for m in mailoutbox] == [["stays@example.com"]]
    _refused(Notification.objects.get(user=leaves).pk)
    assert Notification.objects.get(user=stays).status == Notification.Status.SENT


def test_a_personal_chat_webhook_is_not_posted_to_once_its_owner_may_no_longer_review(
    agent, settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.AISPM_ALLOW_PRIVATE_TARGETS = True
    chat = Receiver().start()
    try:
        person = reviewer(username="rita")
        preference_save(
            actor=person,
            user=person,
            channel="json",
            mode="immediate",
            min_risk="low",
            webhook_url=chat.url,
        )
        _submit(agent, 0)
        _submit(agent, 1)
        first, second = _fan_out(monkeypatch, django_capture_on_commit_callbacks)
        notification_tasks.send_notification.delay(first)
        assert len(chat.requests) == 1 and "Pricing" in json.dumps(
            json.loads(chat.requests[0].body)
        )
        person.groups.clear()
        notification_tasks.send_notification.delay(second)
        assert len(chat.requests) == 1
        _refused(second)
    finally:
        chat.stop()


def test_the_agents_owner_is_not_notified_even_when_made_owner_after_the_fan_out(
    agent, mailoutbox, monkeypatch, django_capture_on_commit_callbacks
):
    person = reviewer(username="rita", email="rita@example.com")
    preference_save(actor=person, user=person, channel="email", mode="immediate", min_risk="low")
    _submit(agent, 0)
    [notification_id] = _fan_out(monkeypatch, django_capture_on_commit_callbacks)
    agent.owner = person
    agent.save()
    notification_tasks.send_notification.delay(notification_id)
    assert mailoutbox == []
    _refused(notification_id)
