"""Queries a release makes (issue 14): an upper bound, so that the work a worker does per
release cannot creep back up. The guarantees the lean path keeps are tested here too:
the claim and its audit event, the re-check, and the record and its audit events."""

import json
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from agents.models import Grant
from approvals import services, tasks
from approvals.models import Decision, ReleaseAttempt
from audit.models import AuditEvent
from tests.approvals.test_release import SECRET, approved, run
from tests.factories import UserFactory, payer_world
from tests.receiver import Receiver

pytestmark = pytest.mark.django_db

# Before issue 14: 20 (a load, the claim and a re-read, its audit event, five re-check
# reads, then the attempt, a transition and a re-read, two audit events, an agent load).
# Now: one statement claims, audits and reads what the re-check needs; one records.
RELEASE_QUERIES = 2


@pytest.fixture
def receiver():
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def world(receiver):
    return payer_world(url=receiver.url, secret=SECRET, owner=UserFactory(username="owner"))


@pytest.fixture(autouse=True)
def fast(settings):
    settings.AISPM_ALLOW_PRIVATE_TARGETS = True
    settings.AISPM_RELEASE_MAX_ATTEMPTS = 3


def events(decision) -> list[tuple[str, dict]]:
    return list(
        AuditEvent.objects.filter(target_id=str(decision.pk))
        .order_by("id")
        .values_list("event", "data")
    )


@pytest.mark.postgres
def test_a_release_makes_at_most_two_queries(world, receiver):
    decision = approved(world)
    with CaptureQueriesContext(connection) as queries:
        assert run(decision) == Decision.Status.RELEASED
    assert len(queries.captured_queries) <= RELEASE_QUERIES, "\n".join(
        q["sql"][:200] for q in queries.captured_queries
    )


@pytest.mark.postgres
def test_a_release_with_a_constraint_and_a_key_still_makes_two_queries(world, receiver):
    Grant.objects.filter(pk=world["grant"].pk).update(constraint="params.what != 'forbidden'")
    decision = approved(world)
    assert decision.key_id is not None
    with CaptureQueriesContext(connection) as queries:
        assert run(decision) == Decision.Status.RELEASED
    assert len(queries.captured_queries) <= RELEASE_QUERIES


def test_a_release_is_audited_claim_attempt_and_release_in_order(world, receiver):
    decision = approved(world)
    before = len(events(decision))
    assert run(decision) == Decision.Status.RELEASED
    recorded = events(decision)[before:]
    assert [event for event, _ in recorded] == [
        "decision.release_started",
        "decision.release_attempted",
        "decision.released",
    ]
    assert recorded[0][1] == {"attempt": 1}
    attempted = recorded[1][1]
    assert attempted["attempt"] == 1 and attempted["connector"] == "webhook"
    assert attempted["succeeded"] is True and attempted["status_code"] == 200
    assert recorded[2][1]["result"]["status_code"] == 200
    event = AuditEvent.objects.filter(target_id=str(decision.pk)).order_by("id").last()
    assert (event.actor_kind, event.actor_label, event.target_type) == (
        "system",
        "system",
        "approvals.decision",
    )
    assert event.seq is None  # the sealer chains it later, as every event
    [attempt] = ReleaseAttempt.objects.filter(decision=decision)
    assert (attempt.number, attempt.succeeded, attempt.status_code) == (1, True, 200)
    decision.refresh_from_db()
    assert decision.status == Decision.Status.RELEASED
    assert decision.released_at is not None and decision.release_lease_until is None
    assert decision.release_result["status_code"] == 200


def test_a_release_sends_the_edited_params_signed(world, receiver):
    decision = approved(world, {"what": "pay 10"})
    Decision.objects.filter(pk=decision.pk).update(approved_params={"what": "pay 9"})
    assert run(decision) == Decision.Status.RELEASED
    [request] = receiver.requests
    Webhook(SECRET).verify(request.body, request.headers)
    body = json.loads(request.body)
    assert body["params"] == {"what": "pay 9"}
    assert body["agent"] == world["agent"].slug and body["action"] == world["action"].key


def test_a_constraint_broken_after_approval_blocks_the_release(world, receiver):
    decision = approved(world, {"what": "pay 10"})
    Grant.objects.filter(pk=world["grant"].pk).update(constraint="params.what == 'pay 5'")
    assert run(decision) == "blocked"
    decision.refresh_from_db()
    assert decision.status == Decision.Status.BLOCKED
    assert "outside the agent's grant" in decision.status_reason
    assert receiver.requests == []


def test_a_canary_is_never_released(world, receiver):
    decision = approved(world)
    Decision.objects.filter(pk=decision.pk).update(canary=True)
    assert run(decision) == "blocked"
    assert receiver.requests == []
    assert not ReleaseAttempt.objects.filter(decision=decision).exists()


def test_an_unknown_decision_is_missing_and_a_released_one_not_claimable(world, receiver):
    assert tasks.release_decision.run("00000000-0000-0000-0000-000000000000") == "missing"
    assert tasks.release_decision.run("not-a-uuid") == "missing"
    decision = approved(world)
    assert run(decision) == Decision.Status.RELEASED
    assert run(decision) == "not claimable"
    assert len(receiver.requests) == 1


def test_a_lease_taken_over_counts_the_attempt(world, receiver, settings):
    decision = approved(world)
    services.decision_release_claim(decision=decision)  # a worker took it, then died
    later = timezone.now() + timedelta(seconds=settings.AISPM_RELEASE_LEASE_SECONDS + 5)
    with time_machine.travel(later):
        assert run(decision) == Decision.Status.RELEASED
    decision.refresh_from_db()
    assert decision.release_attempts == 2
    assert [e for e, d in events(decision) if e == "decision.release_started"] == [
        "decision.release_started"
    ] * 2
    assert ReleaseAttempt.objects.get(decision=decision).number == 2
