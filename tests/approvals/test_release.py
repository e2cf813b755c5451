import json
from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from agents import crypto
from agents.models import Alert
from agents.services import global_stop_set, grant_remove
from approvals import services, tasks
from approvals.models import Decision, ReleaseAttempt
from audit.models import AuditEvent
from tests.factories import (
    ActionTypeFactory,
    GrantFactory,
    UserFactory,
    payer_world,
    reviewer,
)
from tests.receiver import Receiver

pytestmark = pytest.mark.django_db
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def receiver():
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def fast(settings):
    settings.AISPM_ALLOW_PRIVATE_TARGETS = True
    settings.AISPM_RELEASE_MAX_ATTEMPTS = 3


@pytest.fixture
def world(receiver):
    return payer_world(url=receiver.url, secret=SECRET, owner=UserFactory(username="owner"))


def approved(world, params=None):
    decision = services.decision_create(
        agent=world["agent"],
        action_type=world["action"],
        key=world["key"],
        params=params or {"what": "pay 10"},
        reasoning="due",
    )
    return services.decision_approve(decision=decision, reviewer=reviewer())


def run(decision):
    return tasks.release_decision.run(str(decision.pk))


def test_approval_enqueues_the_release_after_commit(
    world, django_capture_on_commit_callbacks, monkeypatch
):
    sent = []
    monkeypatch.setattr(tasks.release_decision, "delay", lambda *a: sent.append(a))
    with django_capture_on_commit_callbacks(execute=True):
        decision = approved(world)
    assert sent == [(str(decision.pk),)]


def test_a_broker_outage_does_not_fail_the_approval(
    world, django_capture_on_commit_callbacks, monkeypatch
):
    def down(*args):
        raise ConnectionError("broker down")

    monkeypatch.setattr(tasks.release_decision, "delay", down)
    with django_capture_on_commit_callbacks(execute=True):
        decision = approved(world)
    assert decision.status == Decision.Status.APPROVED
    with time_machine.travel(timezone.now() + timedelta(minutes=5)):
        assert decision.pk in services.releases_to_sweep(now=timezone.now())


def test_a_webhook_release_is_signed_and_released_once(world, receiver):
    decision = approved(world, {"what": "pay 10", "note": "<script>"})
    assert run(decision) == Decision.Status.RELEASED
    [request] = receiver.requests
    assert request.headers["webhook-id"] == str(decision.pk)
    assert request.headers["idempotency-key"] == str(decision.pk)
    Webhook(SECRET).verify(request.body, request.headers)  # raises if the signature is wrong
    assert json.loads(request.body)["params"] == {"what": "pay 10", "note": "<script>"}
    decision.refresh_from_db()
    assert decision.released_at is not None
    assert decision.release_result["status_code"] == 200
    assert run(decision) == "not claimable"
    assert len(receiver.requests) == 1


def test_transient_failures_are_retried_then_released(world, receiver):
    receiver.script = [(503, 0), (503, 0)]
    decision = approved(world)
    assert run(decision) == "retrying"
    with time_machine.travel(timezone.now() + timedelta(minutes=1)):
        assert run(decision) == "retrying"
    with time_machine.travel(timezone.now() + timedelta(minutes=3)):
        assert run(decision) == Decision.Status.RELEASED
    attempts = list(
        ReleaseAttempt.objects.filter(decision=decision).values_list(
            "number", "status_code", "succeeded"
        )
    )
    assert attempts == [(1, 503, False), (2, 503, False), (3, 200, True)]
    assert len(receiver.requests) == 3
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1


def test_a_retry_is_not_taken_before_its_backoff(world, receiver):
    receiver.script = [(503, 0)]
    decision = approved(world)
    run(decision)
    assert run(decision) == "not claimable"
    assert len(receiver.requests) == 1


def test_a_target_that_stays_down_fails_with_an_alert(world, receiver):
    receiver.default = (502, 0)
    decision = approved(world)
    for minutes in range(3):
        with time_machine.travel(timezone.now() + timedelta(minutes=5 * minutes)):
            run(decision)
    decision.refresh_from_db()
    assert decision.status == Decision.Status.FAILED
    assert decision.release_attempts == 3
    alert = Alert.objects.get(kind="release_failed")
    assert alert.agent == world["agent"] and alert.subject == str(decision.pk)
    events = AuditEvent.objects.filter(target_id=str(decision.pk)).values_list("event", flat=True)
    assert list(events).count("decision.release_attempted") == 3
    assert "decision.release_failed" in events


def test_a_client_error_fails_at_once(world, receiver):
    receiver.script = [(422, 0)]
    decision = approved(world)
    assert run(decision) == Decision.Status.FAILED
    assert ReleaseAttempt.objects.get(decision=decision).status_code == 422


def test_a_429_is_retried(world, receiver):
    receiver.script = [(429, 0)]
    assert run(approved(world)) == "retrying"


def test_private_targets_are_refused_unless_allowed(world, receiver, settings):
    settings.AISPM_ALLOW_PRIVATE_TARGETS = False
    decision = approved(world)
    assert run(decision) == Decision.Status.FAILED
    assert receiver.requests == []
    assert "private or local" in ReleaseAttempt.objects.get(decision=decision).error


@pytest.mark.parametrize("breach", ["revoke", "suspend", "grant", "stop"])
def test_the_recheck_blocks_release(world, receiver, breach):
    decision = approved(world)
    if breach == "revoke":
        type(world["key"]).objects.filter(pk=world["key"].pk).update(revoked_at=timezone.now())
    elif breach == "suspend":
        type(world["agent"]).objects.filter(pk=world["agent"].pk).update(status="suspended")
    elif breach == "grant":
        grant_remove(grant=world["grant"])
    else:
        global_stop_set(engaged=True, reason="incident", actor=UserFactory(is_superuser=True))
    assert run(decision) == "blocked"
    decision.refresh_from_db()
    assert decision.status == Decision.Status.BLOCKED
    assert decision.status_reason
    assert receiver.requests == []


def test_the_email_connector_sends_through_django(world):
    action = ActionTypeFactory(
        key="email.send", connector_type="email", connector_config={"from": "agents@acme.example"}
    )
    GrantFactory(agent=world["agent"], action_type=action)
    decision = services.decision_create(
        agent=world["agent"],
        action_type=action,
        key=world["key"],
        reasoning="r",
        params={"to": ["maria@example.com"], "subject": "Hi\r\nBcc: x@evil.example", "body": "B"},
    )
    decision = services.decision_approve(decision=decision, reviewer=reviewer())
    assert run(decision) == Decision.Status.RELEASED
    [message] = mail.outbox
    assert message.to == ["maria@example.com"]
    assert message.from_email == "agents@acme.example"
    assert "\n" not in message.subject
    assert message.extra_headers["X-Aispm-Decision"] == str(decision.pk)


def test_the_none_connector_just_releases(world):
    action = ActionTypeFactory(key="crm.update", connector_type="none")
    GrantFactory(agent=world["agent"], action_type=action)
    decision = services.decision_create(
        agent=world["agent"], action_type=action, key=world["key"], params={}, reasoning="r"
    )
    decision = services.decision_approve(decision=decision, reviewer=reviewer())
    assert run(decision) == Decision.Status.RELEASED


def test_a_worker_that_died_is_taken_over_after_its_lease(world, receiver, settings):
    decision = approved(world)
    services.decision_release_claim(decision=decision)  # a worker took it, then died
    assert run(decision) == "not claimable"
    later = timezone.now() + timedelta(seconds=settings.AISPM_RELEASE_LEASE_SECONDS + 5)
    with time_machine.travel(later):
        assert decision.pk in services.releases_to_sweep(now=timezone.now())
        assert run(decision) == Decision.Status.RELEASED
    assert len(receiver.requests) == 1


def test_expiry_expires_and_an_approval_racing_it_loses(world):
    decision = services.decision_create(
        agent=world["agent"], action_type=world["action"], params={"what": "x"}, reasoning="r"
    )
    other = services.decision_create(
        agent=world["agent"], action_type=world["action"], params={"what": "y"}, reasoning="r"
    )
    with time_machine.travel(decision.expires_at + timedelta(seconds=1)):
        with pytest.raises(services.DecisionExpired):
            services.decision_approve(decision=decision, reviewer=reviewer())
        decision.refresh_from_db()
        assert decision.status == Decision.Status.EXPIRED
        assert tasks.expire_pending_decisions.run() == 1
    other.refresh_from_db()
    assert other.status == Decision.Status.EXPIRED
    assert not services.releases_to_sweep(now=timezone.now() + timedelta(days=2))


def test_agents_with_a_callback_url_get_signed_events(
    world, receiver, django_capture_on_commit_callbacks, monkeypatch
):
    agent = world["agent"]
    secret = crypto.generate_webhook_secret()
    type(agent).objects.filter(pk=agent.pk).update(
        callback_url=receiver.url, callback_secret_encrypted=crypto.encrypt_secret(secret)
    )
    agent.refresh_from_db()
    monkeypatch.setattr(tasks.release_decision, "delay", lambda *a: None)
    # Run the callback in-process, whether or not a broker is configured.
    monkeypatch.setattr(tasks.notify_agent, "delay", lambda *a: tasks.notify_agent.run(*a))
    with django_capture_on_commit_callbacks(execute=True):
        decision = services.decision_create(
            agent=agent, action_type=world["action"], params={"what": "x"}, reasoning="r"
        )
        services.decision_reject(decision=decision, reviewer=reviewer(), reason="No")
    [event] = receiver.requests
    Webhook(secret).verify(event.body, event.headers)
    body = json.loads(event.body)
    assert (body["type"], body["decision_id"]) == ("decision.rejected", str(decision.pk))
    assert event.headers["webhook-id"] == f"{decision.pk}.rejected"


def test_a_redirect_is_not_followed(world, receiver):
    receiver.script = [(302, 0)]
    decision = approved(world)
    assert run(decision) == Decision.Status.FAILED
    assert len(receiver.requests) == 1
    assert ReleaseAttempt.objects.get(decision=decision).status_code == 302


def test_the_global_stop_blocks_every_queued_release(
    world, receiver, monkeypatch, django_capture_on_commit_callbacks
):
    queued = []
    monkeypatch.setattr(tasks.release_decision, "delay", lambda *a: queued.append(a))
    with django_capture_on_commit_callbacks(execute=True):
        decisions = [approved(world, {"what": f"pay {n}"}) for n in range(100)]
    assert len(queued) == 100
    global_stop_set(engaged=True, reason="incident 42", actor=UserFactory(is_superuser=True))
    for (decision_id,) in queued:
        tasks.release_decision.run(decision_id)
    assert receiver.requests == []
    statuses = set(
        Decision.objects.filter(pk__in=[d.pk for d in decisions]).values_list("status", flat=True)
    )
    assert statuses == {Decision.Status.BLOCKED}
    assert not ReleaseAttempt.objects.exists()


def test_suspending_an_agent_blocks_its_queued_releases(
    world, receiver, monkeypatch, django_capture_on_commit_callbacks
):
    from agents.services import agent_suspend

    queued = []
    monkeypatch.setattr(tasks.release_decision, "delay", lambda *a: queued.append(a))
    with django_capture_on_commit_callbacks(execute=True):
        [approved(world) for _ in range(5)]
    agent_suspend(agent=world["agent"], reason="compromised")
    assert {tasks.release_decision.run(*args) for args in queued} == {"blocked"}
    assert receiver.requests == []
