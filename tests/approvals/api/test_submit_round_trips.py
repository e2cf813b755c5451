"""What a submission costs in round trips, and the guarantees its one-statement write
keeps: the audit event audit_record would write, idempotency, the hourly limit and
standing approvals (approvals.services.ingest)."""

import os
from datetime import timedelta

import pytest
import redis
from django.db import DataError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from agents.services import agent_key_issue, grant_apply
from approvals import ratelimit, standing
from approvals.models import Decision, StandingApproval
from approvals.services import submission
from audit.models import AuditEvent
from audit.services import audit_seal_all, chain_verify
from tests.factories import (
    ActionTypeFactory,
    AgentFactory,
    BehaviourVersionFactory,
    GrantFactory,
    UserFactory,
    agent_admin,
    reviewer,
)

URL = "/api/v1/decisions/"
REDIS_URL = f"redis://127.0.0.1:6379/{int(os.environ.get('AISPM_ITEST_REDIS_DB', '7'))}"
pytestmark = pytest.mark.postgres


def _statements(api, body, expect=201):
    with CaptureQueriesContext(connection) as queries:
        response = api.post(URL, body, format="json")
    assert response.status_code == expect, response.content
    return response.json(), [query["sql"] for query in queries.captured_queries]


@pytest.mark.django_db(transaction=True)
def test_a_new_decision_is_one_round_trip_to_postgresql(api, email_body):
    # The process reads the key (and writes its last_used_at, once a minute) on its
    # first request, and remembers it.
    _, sql = _statements(api, dict(email_body, idempotency_key="rt-0"))
    assert sql[0].startswith("SELECT") and '"key_hash" = ' in sql[0], sql
    payment = {"action": "payment.transfer", "params": {"amount": 10, "to": "Acme"}}
    for body, status in [
        (dict(email_body, idempotency_key="rt-1"), "pending"),
        (dict(email_body), "pending"),
        (dict(payment, reasoning="Invoice due", idempotency_key="rt-2"), "approved"),
    ]:
        created, sql = _statements(api, body)
        assert created["status"] == status
        # The decision with its audit event, in the statement that confirms the
        # remembered key and its agent. No key lookup, BEGIN, COMMIT, SAVEPOINT or
        # separate idempotency lookup.
        assert len(sql) == 1, sql
        assert sql[0].startswith("WITH g AS (SELECT md5(ROW(")
        assert "d AS (INSERT INTO" in sql[0]
    decision = Decision.objects.get(idempotency_key="rt-1")
    event = AuditEvent.objects.get(event="decision.submitted", target_id=str(decision.pk))
    assert event.data["status"] == "pending"


@pytest.mark.django_db(transaction=True)
def test_the_decision_is_not_stored_if_its_audit_event_cannot_be(api, email_body, monkeypatch):
    from approvals.services import ingest

    real = ingest.audit_row

    def too_long(**kwargs):  # audit_auditevent.event is varchar(100)
        return {**real(**kwargs), "event": "x" * 101}

    monkeypatch.setattr(ingest, "audit_row", too_long)
    with pytest.raises(DataError):
        api.post(URL, dict(email_body, idempotency_key="atomic-1"), format="json")
    assert not Decision.objects.exists()
    assert not AuditEvent.objects.filter(event__startswith="x").exists()


@pytest.mark.django_db(transaction=True)
def test_a_replay_reads_the_original_after_the_insert_finds_its_key(api, email_body):
    body = dict(email_body, idempotency_key="rt-replay")
    first = api.post(URL, body, format="json").json()
    replay, sql = _statements(api, body, expect=200)
    assert replay == first
    assert len(sql) == 2, sql  # the insert (which confirms the key), the original
    assert Decision.objects.count() == AuditEvent.objects.filter(event="decision.submitted").count()


@pytest.mark.django_db
def test_the_one_statement_write_stores_what_the_orm_path_stores(api, email_body, monkeypatch):
    fast = api.post(URL, dict(email_body, idempotency_key="path-1"), format="json").json()
    monkeypatch.setattr(submission, "_replay_at_insert", lambda agent, action: False)
    orm = api.post(URL, dict(email_body, idempotency_key="path-2"), format="json").json()
    rows = {
        row.idempotency_key: row
        for row in Decision.objects.filter(pk__in=[fast["id"], orm["id"]]).order_by()
    }
    fields = [
        f.attname
        for f in Decision._meta.concrete_fields
        if f.attname not in {"id", "idempotency_key", "created_at", "updated_at", "expires_at"}
    ]
    assert {f: getattr(rows["path-1"], f) for f in fields} == {
        f: getattr(rows["path-2"], f) for f in fields
    }
    events = {
        event.target_id: event
        for event in AuditEvent.objects.filter(event="decision.submitted").order_by()
    }
    columns = ["event", "actor_kind", "actor_label", "actor_user_id", "target_type", "data"]
    fast_event, orm_event = events[fast["id"]], events[orm["id"]]
    assert {c: getattr(fast_event, c) for c in columns} == {
        c: getattr(orm_event, c) for c in columns
    }
    assert fast_event.data["confidence"] == 0.8
    assert (fast_event.seq, fast_event.prev_hash, fast_event.hash) == (None, "", "")
    assert audit_seal_all() >= 2
    assert chain_verify().ok


@pytest.fixture
def counters(settings):
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError:
        if os.environ.get("CI"):
            raise
        pytest.skip("needs Redis on 127.0.0.1:6379")
    client.flushdb()
    settings.AISPM_REDIS_URL = REDIS_URL
    yield client
    client.flushdb()


def _count(counters) -> int:
    [key] = counters.keys("aispm:rate:*")
    return int(counters.get(key))


@pytest.mark.django_db
def test_a_replay_uses_none_of_the_hourly_limit(api, agent, email_body, counters):
    grant = agent.grants.get(action_type__key="email.send")
    grant_apply(agent=agent, action_type=grant.action_type, limit_per_hour=2)
    body = dict(email_body, idempotency_key="limit-1")
    first = api.post(URL, body, format="json").json()
    for _ in range(3):
        assert api.post(URL, body, format="json").json()["id"] == first["id"]
    assert _count(counters) == 1
    changed = dict(body, reasoning="Another body")
    assert api.post(URL, changed, format="json").status_code == 409
    assert _count(counters) == 1
    assert api.post(URL, email_body, format="json").status_code == 201
    assert api.post(URL, email_body, format="json").status_code == 429
    # Over the limit, a replay still returns its original, and takes back its count.
    assert api.post(URL, body, format="json").status_code == 200
    assert _count(counters) == 3


def test_uncounting_never_creates_a_counter(counters):
    agent, action_type = AgentFactory.build(), ActionTypeFactory.build(pk=1)
    ratelimit.uncount(agent=agent, action_type=action_type, now=timezone.now())
    assert counters.keys("aispm:rate:*") == []


# Standing approvals through the one-statement path.


@pytest.fixture
def payer():
    agent = AgentFactory(slug="payer", owner=UserFactory(username="payer-owner"))
    agent.active_behaviour = BehaviourVersionFactory(
        agent=agent, number=1, policy=[{"id": "all", "outcome": "review", "risk": "medium"}]
    )
    agent.save()
    action = ActionTypeFactory(
        key="invoice.pay",
        params_schema={
            "type": "object",
            "properties": {"vendor": {"type": "string"}, "amount": {"type": "number"}},
        },
    )
    GrantFactory(agent=agent, action_type=action)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {agent_key_issue(agent=agent).secret}")
    return client


def _invoice(vendor="Acme", amount=100, key=None):
    body = {"action": "invoice.pay", "params": {"vendor": vendor, "amount": amount}}
    return {**body, "reasoning": "Invoice due.", **({"idempotency_key": key} if key else {})}


def _standing_from(decision_id):
    person = reviewer(username="trusted")
    standing.standing_permission_set(user=person, granted=True, actor=agent_admin())
    person = type(person).objects.get(pk=person.pk)
    return standing.standing_approval_create(
        decision=Decision.objects.get(pk=decision_id),
        reviewer=person,
        condition='params.vendor == "Acme" && params.amount <= 500',
        max_count=3,
        ends_at=timezone.now() + timedelta(hours=1),
    )


@pytest.mark.django_db
def test_a_matching_standing_approval_is_used_once_and_a_replay_uses_none(payer):
    first = payer.post(URL, _invoice(key="inv-0"), format="json").json()
    assert first["status"] == "pending"
    created = _standing_from(first["id"])
    body = _invoice(amount=200, key="inv-1")
    allowed = payer.post(URL, body, format="json").json()
    assert (allowed["status"], allowed["approval"]) == ("approved", "standing")
    assert allowed["standing_approval"] == str(created.pk)
    replay = payer.post(URL, body, format="json")
    assert (replay.status_code, replay.json()["id"]) == (200, allowed["id"])
    assert StandingApproval.objects.get(pk=created.pk).used_count == 1
    assert AuditEvent.objects.filter(event="standing_approval.used").count() == 1
    submitted = AuditEvent.objects.get(event="decision.submitted", target_id=allowed["id"])
    assert submitted.data["standing_approval"] == str(created.pk)


@pytest.mark.django_db
def test_a_live_standing_approval_that_does_not_match_leaves_the_decision_pending(payer):
    first = payer.post(URL, _invoice(), format="json").json()
    created = _standing_from(first["id"])
    other = payer.post(URL, _invoice(vendor="Other"), format="json").json()
    assert (other["status"], other["approval"], other["standing_approval"]) == (
        "pending",
        "",
        None,
    )
    assert StandingApproval.objects.get(pk=created.pk).used_count == 0
    assert AuditEvent.objects.filter(event="decision.submitted", target_id=other["id"]).count() == 1
