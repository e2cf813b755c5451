"""Notifications: real SMTP (aiosmtpd) and a loopback chat receiver, after commit, retried."""

import json
import socket
from datetime import timedelta
from email import message_from_bytes, policy
from pathlib import Path

import jsonschema
import pytest
import time_machine
from aiosmtpd.controller import Controller
from django.utils import timezone

from approvals import services
from approvals.models import Decision, Notification, NotificationPreference
from approvals.notifications import preference_save
from approvals.notifications import tasks as notification_tasks
from audit.models import AuditEvent
from tests.approvals import notification_schemas
from tests.approvals.eager import eager_tasks  # noqa: F401 - autouse
from tests.factories import UserFactory, auditor, reviewer
from tests.receiver import Receiver

GENERIC_SCHEMA = json.loads(
    (Path(__file__).parents[2] / "approvals/notifications/generic.schema.json").read_text()
)
HOSTILE_SUBJECT = (
    "Hi\r\nBcc: evil@example.com <script>alert(1)</script> \u202eRTL *bold* [x](http://evil)"
)


class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        self.messages.append(
            (envelope.rcpt_tos, message_from_bytes(envelope.content, policy=policy.default))
        )
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def smtp(settings):
    inbox = Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": port, "timeout": 5},
        }
    }
    yield inbox
    controller.stop()


@pytest.fixture
def chat(settings):
    settings.AISPM_ALLOW_PRIVATE_TARGETS = True
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _fast_retries(settings):
    settings.AISPM_PUBLIC_URL = "https://aispm.example.test"


def _submit(agent, *, subject="Pricing", to=("lead@example.com",), capture=None):
    return services.decision_create(
        agent=agent,
        action_type=agent.grants.get(action_type__key="email.send").action_type,
        params={"to": list(to), "subject": subject, "body": "Hi"},
        reasoning="The prospect asked.",
    )


def _submit_committed(agent, django_capture_on_commit_callbacks, **kwargs):
    """Submit, then run beat's sweep and the sends it enqueues after commit."""
    decision = _submit(agent, **kwargs)
    with django_capture_on_commit_callbacks(execute=True):
        notification_tasks.notify_new_decisions()
    return decision


def test_a_new_decision_is_emailed_through_real_smtp_with_summary_risk_expiry_and_link(
    agent, smtp, django_capture_on_commit_callbacks
):
    person = reviewer(username="rita", email="rita@example.com")
    preference_save(actor=person, user=person, channel="email", mode="immediate", min_risk="low")
    decision = _submit_committed(agent, django_capture_on_commit_callbacks)
    assert decision.status == Decision.Status.PENDING
    [(rcpt, message)] = smtp.messages
    assert rcpt == ["rita@example.com"]
    body = message.get_content()
    assert "Email to lead@example.com: Pricing" in body
    assert f"risk: {decision.risk}" in body
    assert decision.expires_at.strftime("%Y-%m-%d %H:%M") in body
    assert f"https://aispm.example.test/inbox/{decision.pk}/" in body
    [notification] = Notification.objects.all()
    assert notification.status == Notification.Status.SENT
    assert notification.recipient == "rita@example.com"
    assert AuditEvent.objects.filter(event="notification.sent").count() == 1


def test_agent_text_cannot_inject_headers_or_hide_direction_in_an_email(
    agent, smtp, django_capture_on_commit_callbacks
):
    person = reviewer(email="r@example.com")
    preference_save(actor=person, user=person, channel="email", mode="immediate", min_risk="low")
    _submit_committed(agent, django_capture_on_commit_callbacks, subject=HOSTILE_SUBJECT)
    [(rcpt, message)] = smtp.messages
    assert rcpt == ["r@example.com"]
    assert message["Bcc"] is None
    assert "\u202e" not in message.get_content() and "⟨U+202E⟩" in message.get_content()
    assert "\r" not in message["Subject"] and "\n" not in message["Subject"]


def test_decisions_below_the_chosen_risk_and_the_agents_owner_are_not_notified(
    agent, smtp, django_capture_on_commit_callbacks
):
    picky = reviewer(email="picky@example.com")
    preference_save(actor=picky, user=picky, channel="email", mode="immediate", min_risk="critical")
    owner = agent.owner
    owner.email = "owner@example.com"
    owner.save()
    from django.contrib.auth.models import Group

    owner.groups.add(Group.objects.get(name="Reviewers"))
    preference_save(actor=owner, user=owner, channel="email", mode="immediate", min_risk="low")
    _submit_committed(agent, django_capture_on_commit_callbacks)
    assert smtp.messages == []
    assert not Notification.objects.exists()


def test_a_group_preference_emails_each_member_who_may_review(
    agent, smtp, django_capture_on_commit_callbacks
):
    from django.contrib.auth.models import Group

    reviewers = Group.objects.get(name="Reviewers")
    reviewer(username="a", email="a@example.com")
    reviewer(username="b", email="b@example.com")
    UserFactory(username="inactive", email="c@example.com", is_active=False).groups.add(reviewers)
    admin = UserFactory(is_superuser=True)
    preference_save(actor=admin, group=reviewers, channel="email", mode="immediate", min_risk="low")
    _submit_committed(agent, django_capture_on_commit_callbacks)
    assert sorted(r[0] for r, _m in smtp.messages) == ["a@example.com", "b@example.com"]


def test_an_unreachable_smtp_server_is_retried_then_recorded_failed(
    agent, settings, django_capture_on_commit_callbacks
):
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": _free_port(), "timeout": 2},
        }
    }
    person = reviewer(email="r@example.com")
    preference_save(actor=person, user=person, channel="email", mode="immediate", min_risk="low")
    _submit_committed(agent, django_capture_on_commit_callbacks)
    [notification] = Notification.objects.all()
    assert notification.status == Notification.Status.FAILED
    assert notification.attempts == notification_tasks.MAX_ATTEMPTS
    assert "ConnectionRefusedError" in notification.error
    assert AuditEvent.objects.filter(event="notification.failed").count() == 1


@pytest.mark.parametrize(
    ("channel", "schema"),
    [
        ("slack", notification_schemas.SLACK),
        ("teams", notification_schemas.TEAMS),
        ("json", GENERIC_SCHEMA),
    ],
)
def test_chat_payloads_match_the_platforms_published_shape(
    agent, chat, channel, schema, django_capture_on_commit_callbacks
):
    person = reviewer()
    preference_save(
        actor=person,
        user=person,
        channel=channel,
        mode="immediate",
        min_risk="low",
        webhook_url=chat.url,
    )
    decision = _submit_committed(agent, django_capture_on_commit_callbacks, subject=HOSTILE_SUBJECT)
    [request] = chat.requests
    payload = json.loads(request.body)
    jsonschema.validate(payload, schema, format_checker=jsonschema.FormatChecker())
    assert request.headers["content-type"] == "application/json"
    text = request.body
    assert str(decision.pk) in text
    assert "\u202e" not in json.loads(text).__repr__()
    assert "<script>" not in text or channel == "json"
    if channel == "slack":
        assert all(
            block["text"]["type"] == "plain_text" for block in payload["blocks"] if "text" in block
        )
    if channel == "teams":
        card = payload["attachments"][0]["content"]
        assert "\\[x\\]\\(http://evil\\)" in card["body"][1]["text"]
    assert Notification.objects.get().status == Notification.Status.SENT


def test_a_failing_chat_webhook_is_retried_and_its_url_never_recorded(
    agent, chat, django_capture_on_commit_callbacks
):
    person = reviewer()
    secret_url = chat.url + "/T000/B000/XXXXsecretXXXX"
    preference_save(
        actor=person,
        user=person,
        channel="slack",
        mode="immediate",
        min_risk="low",
        webhook_url=secret_url,
    )
    chat.script = [(500, 0), (200, 0)]
    _submit_committed(agent, django_capture_on_commit_callbacks)
    notification = Notification.objects.get()
    assert notification.status == Notification.Status.SENT
    assert notification.attempts == 2
    chat.script = [(500, 0)] * 10
    _submit_committed(agent, django_capture_on_commit_callbacks, subject="Another")
    failed = Notification.objects.get(status=Notification.Status.FAILED)
    assert failed.attempts == notification_tasks.MAX_ATTEMPTS
    stored = json.dumps(list(AuditEvent.objects.values("data"))) + json.dumps(
        list(Notification.objects.values("recipient", "error"))
    )
    assert "XXXXsecretXXXX" not in stored
    assert "XXXXsecretXXXX" not in NotificationPreference.objects.get().webhook_url_encrypted


def test_a_submission_does_no_notification_work_and_beat_picks_it_up_once(
    agent, monkeypatch, django_capture_on_commit_callbacks
):
    person = reviewer(email="r@example.com")
    preference_save(actor=person, user=person, channel="email", mode="immediate", min_risk="low")
    calls = []
    monkeypatch.setattr(notification_tasks.send_notification, "delay", calls.append)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        decision = _submit(agent)
    assert callbacks == [] and calls == []  # nothing on the agent's request, not even an enqueue
    assert not Notification.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        assert notification_tasks.notify_new_decisions() == 1
        assert notification_tasks.notify_new_decisions() == 0
    [notification] = Notification.objects.all()
    assert calls == [str(notification.pk)]
    decision.refresh_from_db()
    assert decision.notified_at is not None


def test_a_broker_outage_leaves_notifications_queued_for_the_resend_sweep(
    agent, monkeypatch, django_capture_on_commit_callbacks
):
    person = reviewer(email="r@example.com")
    preference_save(actor=person, user=person, channel="email", mode="immediate", min_risk="low")

    def down(*args):
        raise ConnectionError("broker down")

    monkeypatch.setattr(notification_tasks.send_notification, "delay", down)
    _submit_committed(agent, django_capture_on_commit_callbacks)
    notification = Notification.objects.get()
    assert notification.status == Notification.Status.QUEUED
    monkeypatch.undo()
    with time_machine.travel(timezone.now() + timedelta(minutes=6)):
        assert notification_tasks.resend_queued_notifications() == 1
    notification.refresh_from_db()
    assert notification.status == Notification.Status.SENT


def test_a_digest_lists_the_new_decisions_once_per_interval(
    agent, smtp, django_capture_on_commit_callbacks
):
    person = reviewer(email="d@example.com")
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        preference_save(
            actor=person,
            user=person,
            channel="email",
            mode="digest",
            min_risk="low",
            digest_minutes=30,
        )
        notification_tasks.send_notification_digests()  # nothing pending: no message
    with time_machine.travel(start + timedelta(minutes=1), tick=False):
        _submit(agent, subject="One")
        _submit(agent, subject="Two")
        assert smtp.messages == []
    with time_machine.travel(start + timedelta(minutes=10), tick=False):
        assert notification_tasks.send_notification_digests() == 0
    with time_machine.travel(start + timedelta(minutes=31), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            assert notification_tasks.send_notification_digests() == 1
        assert notification_tasks.send_notification_digests() == 0
    [(_rcpt, message)] = smtp.messages
    assert "2 decision(s) waiting" in message["Subject"]
    assert "Pricing" not in message.get_content()
    assert ": One" in message.get_content() and ": Two" in message.get_content()


# --- the profile page -------------------------------------------------------------


def test_a_reviewer_saves_a_chat_webhook_which_is_stored_encrypted_and_audited(client, chat, db):
    person = reviewer()
    client.force_login(person)
    assert client.get("/inbox/profile/").status_code == 200
    response = client.post(
        "/inbox/profile/",
        {
            "channel": "teams",
            "mode": "digest",
            "min_risk": "medium",
            "digest_minutes": 15,
            "webhook_url": chat.url + "/secretpath",
        },
    )
    assert response.status_code == 302
    preference = NotificationPreference.objects.get(user=person)
    assert (preference.channel, preference.mode, preference.digest_minutes) == (
        "teams",
        "digest",
        15,
    )
    assert "secretpath" not in preference.webhook_url_encrypted
    event = AuditEvent.objects.get(event="notification.preference_saved")
    assert "secretpath" not in json.dumps(event.data)
    assert "secretpath" not in client.get("/inbox/profile/").content.decode()


def test_the_profile_page_refuses_private_webhooks_and_a_digest_under_five_minutes(
    client, settings, db
):
    settings.AISPM_ALLOW_PRIVATE_TARGETS = False
    client.force_login(reviewer())
    response = client.post(
        "/inbox/profile/",
        {
            "channel": "slack",
            "mode": "immediate",
            "min_risk": "high",
            "digest_minutes": 60,
            "webhook_url": "https://169.254.169.254/latest/",
        },
    )
    assert response.status_code == 400
    response = client.post(
        "/inbox/profile/",
        {"channel": "email", "mode": "digest", "min_risk": "high", "digest_minutes": 1},
    )
    assert response.status_code == 400
    assert not NotificationPreference.objects.exists()


@pytest.mark.parametrize("method", ["get", "post"])
def test_the_profile_page_is_for_reviewers_only(client, method, db):
    response = getattr(client, method)("/inbox/profile/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    client.force_login(auditor())
    assert getattr(client, method)("/inbox/profile/").status_code == 403
    client.force_login(reviewer())
    assert client.put("/inbox/profile/").status_code == 405


def test_a_group_chat_channel_is_set_from_the_command_line_with_the_url_from_the_environment(
    chat, monkeypatch, db
):
    from django.core.management import CommandError, call_command

    monkeypatch.setenv("TEAM_HOOK", chat.url + "/secret")
    call_command("notification_preference", "Reviewers", "slack", "--webhook-url-env", "TEAM_HOOK")
    preference = NotificationPreference.objects.get(group__name="Reviewers")
    assert (preference.channel, preference.mode, preference.target_label) == (
        "slack",
        "immediate",
        "127.0.0.1",
    )
    with pytest.raises(CommandError):
        call_command("notification_preference", "Nobody", "email")
