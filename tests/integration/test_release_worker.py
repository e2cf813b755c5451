"""The release pipeline end to end: a real Celery worker on Redis, a loopback receiver.

Decisions are approved through the services, so the release is enqueued after commit
and travels through Redis to the worker process, exactly as in production.
"""

import json
import logging
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from agents.models import ActionType, AgentKey, Alert
from approvals import services
from approvals.models import Decision, ReleaseAttempt
from tests.factories import (
    UserFactory,
    payer_world,
)

from .conftest import LEASE_SECONDS, MAX_ATTEMPTS, free_port, wait_for

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(120),
]
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
UNFINISHED = {Decision.Status.APPROVED, Decision.Status.RELEASING}


@pytest.fixture
def world(receiver):
    return payer_world(url=receiver.url, secret=SECRET)


def pending(world, params=None) -> Decision:
    return services.decision_create(
        agent=world["agent"],
        action_type=world["action"],
        key=world["key"],
        params=params or {"what": "pay 10"},
        reasoning="due",
    )


def approve(decision: Decision) -> Decision:
    reviewer = UserFactory(username=f"reviewer-{decision.pk.hex[:8]}")
    return services.decision_approve(decision=decision, reviewer=reviewer)


def finished(decision: Decision, celery, *, timeout: float) -> Decision:
    """Wait until the release of `decision` is over, and return the row."""

    def done():
        decision.refresh_from_db()
        return decision.status not in UNFINISHED

    wait_for(
        done,
        timeout=timeout,
        what=f"decision {decision.pk} to leave {decision.status}",
        interval=0.1,
        details=celery.logs,
    )
    return decision


def attempts(decision: Decision) -> list[tuple]:
    return list(
        ReleaseAttempt.objects.filter(decision=decision).values_list(
            "number", "status_code", "succeeded"
        )
    )


def test_an_approved_decision_reaches_the_receiver_once_with_a_valid_signature(
    world, receiver, celery
):
    celery.worker()
    decision = approve(pending(world, {"what": "pay 10", "note": "<script>"}))
    assert decision.status == Decision.Status.APPROVED

    decision = finished(decision, celery, timeout=20)
    time.sleep(0.5)  # room for a duplicate to show up

    assert decision.status == Decision.Status.RELEASED, decision.status_reason
    [request] = receiver.requests
    assert request.headers["webhook-id"] == str(decision.pk)
    assert request.headers["idempotency-key"] == str(decision.pk)
    Webhook(SECRET).verify(request.body, request.headers)  # raises if the signature is wrong
    body = json.loads(request.body)
    assert body["decision_id"] == str(decision.pk)
    assert body["params"] == {"what": "pay 10", "note": "<script>"}
    assert decision.release_attempts == 1
    assert attempts(decision) == [(1, 200, True)]
    assert decision.released_at is not None
    assert decision.release_lease_until is None


def test_two_503s_then_200_give_one_effect_and_three_attempts(world, receiver, celery):
    receiver.script = [(503, 0), (503, 0)]
    celery.worker()
    decision = approve(pending(world))

    decision = finished(decision, celery, timeout=30)

    assert decision.status == Decision.Status.RELEASED, decision.status_reason
    assert attempts(decision) == [(1, 503, False), (2, 503, False), (3, 200, True)]
    assert decision.release_attempts == 3
    assert [r.headers["webhook-id"] for r in receiver.requests] == [str(decision.pk)] * 3
    assert [r.body for r in receiver.requests] == [receiver.requests[0].body] * 3


@pytest.mark.parametrize("down", ["http-502", "closed-port"])
def test_a_target_that_stays_down_fails_after_bounded_attempts_with_an_alert(
    world, receiver, celery, down
):
    if down == "http-502":
        receiver.default = (502, 0)
    else:
        ActionType.objects.filter(pk=world["action"].pk).update(
            connector_config={"url": f"http://127.0.0.1:{free_port()}/hook"}
        )
    celery.worker()
    decision = approve(pending(world))

    decision = finished(decision, celery, timeout=30)

    assert decision.status == Decision.Status.FAILED
    assert decision.release_attempts == MAX_ATTEMPTS
    rows = ReleaseAttempt.objects.filter(decision=decision)
    assert [a.number for a in rows] == list(range(1, MAX_ATTEMPTS + 1))
    assert all(not a.succeeded and a.retryable for a in rows)
    expected_code = 502 if down == "http-502" else None
    assert {a.status_code for a in rows} == {expected_code}
    assert len(receiver.requests) == (MAX_ATTEMPTS if down == "http-502" else 0)
    alert = Alert.objects.get(kind="release_failed")
    assert alert.subject == str(decision.pk)
    assert alert.agent_id == world["agent"].pk


def test_a_worker_killed_mid_release_is_recovered_by_the_sweeper_under_the_same_webhook_id(
    world, receiver, celery
):
    receiver.script = [(200, 4.0)]  # the first delivery hangs long enough to kill the worker
    celery.beat()
    doomed = celery.worker()
    decision = approve(pending(world))

    wait_for(
        lambda: receiver.requests,
        timeout=20,
        what="the first delivery",
        details=celery.logs,
    )
    decision.refresh_from_db()
    assert decision.status == Decision.Status.RELEASING
    first_lease_until = decision.release_lease_until
    doomed.kill()
    assert not doomed.alive
    celery.worker()

    # The lease runs out, beat's sweeper re-enqueues it, the new worker claims it again.
    decision = finished(decision, celery, timeout=LEASE_SECONDS + 20)

    assert decision.status == Decision.Status.RELEASED, decision.status_reason
    ids = [r.headers["webhook-id"] for r in receiver.requests]
    # The first delivery reached the receiver before the kill, so the receiver saw the
    # effect twice, both under the decision id: at-least-once, deduplicable downstream.
    after_lease = (decision.released_at - first_lease_until).total_seconds()
    print(
        f"\nworker kill: {len(ids)} deliveries, webhook-ids {set(ids)}; "
        f"released {after_lease:+.1f}s after the lease ran out"
    )
    assert ids == [str(decision.pk)] * len(ids)
    assert len(ids) == 2
    assert decision.release_attempts == 2
    assert attempts(decision) == [(2, 200, True)]  # the killed attempt recorded nothing
    # Nothing stays releasing past its lease: the sweeper takes it within about a second.
    assert decision.released_at <= first_lease_until + timedelta(seconds=5)
    assert not Decision.objects.filter(status=Decision.Status.RELEASING).exists()


def test_an_approval_during_a_broker_outage_succeeds_and_is_released_once_redis_is_back(
    world, receiver, private_redis, celery, broker_switch, caplog
):
    broker_switch.point(private_redis.url)
    celery.beat(broker=private_redis.url)
    celery.worker(broker=private_redis.url)
    decision = pending(world)

    private_redis.stop()
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="django.db.backends.base"):
        decision = approve(decision)  # the enqueue fails after commit; it must not raise
    approve_seconds = time.monotonic() - started

    assert decision.status == Decision.Status.APPROVED
    decision.refresh_from_db()
    assert decision.status == Decision.Status.APPROVED
    assert approve_seconds < 5, f"approving took {approve_seconds:.1f}s with the broker down"
    # on_commit(robust=True) logged the failed enqueue; only the sweeper can help now.
    assert "release_decision" in caplog.text and "in on_commit()" in caplog.text
    assert receiver.requests == []

    private_redis.start()
    restarted = time.monotonic()
    decision = finished(decision, celery, timeout=45)
    print(
        f"\nbroker outage: approve took {approve_seconds:.2f}s with Redis down; released "
        f"{time.monotonic() - restarted:.1f}s after Redis came back"
    )

    assert decision.status == Decision.Status.RELEASED, decision.status_reason
    assert [r.headers["webhook-id"] for r in receiver.requests] == [str(decision.pk)]


def test_a_key_revoked_between_approval_and_release_blocks_it_without_delivery(
    world, receiver, celery
):
    decision = approve(pending(world))  # no worker yet: the release waits in Redis
    AgentKey.objects.filter(pk=world["key"].pk).update(revoked_at=timezone.now())
    celery.worker()

    decision = finished(decision, celery, timeout=20)

    assert decision.status == Decision.Status.BLOCKED
    assert "revoked" in decision.status_reason
    assert receiver.requests == []
    assert not ReleaseAttempt.objects.filter(decision=decision).exists()
