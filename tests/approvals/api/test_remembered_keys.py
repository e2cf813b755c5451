"""A key this process has read is answered from memory (agents.auth, remember=True), and
nothing done on its authority counts until the database confirms the key and its agent:
the insert checks them in the same statement, and a refusal or a replay reads them
afresh first. Each change below is made in the database, as another process (the admin
screens, a management command) would make it, after the key was remembered."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents.auth import REMEMBERED
from agents.models import Agent, AgentKey
from agents.services import (
    agent_key_revoke,
    agent_suspend,
    anomaly_rules_set,
    behaviour_version_activate,
    behaviour_version_create,
    grant_apply,
    grant_remove,
)
from approvals.models import Decision
from audit.models import AuditEvent
from tests.approvals.api.test_submit_round_trips import _count, counters  # noqa: F401
from tests.factories import ActionTypeFactory

URL = "/api/v1/decisions/"
pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def post(api, body):
    with CaptureQueriesContext(connection) as queries:
        response = api.post(URL, body, format="json")
    return response, [query["sql"] for query in queries.captured_queries]


def looked_up(sql) -> bool:
    return any('"key_hash" = ' in statement for statement in sql)


@pytest.fixture
def remembered(api, email_body):
    """The API client, after a submission that made this process remember its key."""
    response, sql = post(api, email_body)
    assert response.status_code == 201
    response, sql = post(api, email_body)
    assert response.status_code == 201
    assert not looked_up(sql), "the second submission should not read the key"
    return api


def test_the_memory_holds_keys_not_secrets(remembered, agent):
    key = AgentKey.objects.get(agent=agent)
    assert key.key_hash in REMEMBERED.rows
    assert all(len(digest) == 64 for digest in REMEMBERED.rows)


def test_a_key_revoked_after_it_was_remembered_is_refused(remembered, agent, email_body):
    agent_key_revoke(key=AgentKey.objects.get(agent=agent))
    response, sql = post(remembered, dict(email_body, reasoning="after revocation"))
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "The key has been revoked."
    assert not Decision.objects.filter(reasoning="after revocation").exists()
    assert Decision.objects.count() == 2


def test_a_replay_on_a_revoked_remembered_key_is_refused(remembered, agent, email_body):
    body = dict(email_body, idempotency_key="before-revocation")
    assert post(remembered, body)[0].status_code == 201
    agent_key_revoke(key=AgentKey.objects.get(agent=agent))
    assert post(remembered, body)[0].status_code == 401


def test_an_agent_suspended_after_its_key_was_remembered_is_refused(remembered, agent, email_body):
    agent_suspend(agent=agent, reason="incident")
    response, sql = post(remembered, dict(email_body, reasoning="while suspended"))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "agent_suspended"
    assert not Decision.objects.filter(reasoning="while suspended").exists()
    assert AuditEvent.objects.filter(event="decision.refused").count() == 1


def test_a_grant_removed_after_the_key_was_remembered_refuses_the_action(
    remembered, agent, email_body
):
    grant_remove(grant=agent.grants.get(action_type__key="email.send"))
    response, _ = post(remembered, dict(email_body, reasoning="after removal"))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "out_of_scope"
    assert not Decision.objects.filter(reasoning="after removal").exists()
    assert AuditEvent.objects.filter(event="decision.out_of_scope").count() == 1


def test_a_grant_added_after_a_refusal_is_used_at_once(remembered, agent):
    body = {"action": "crm.note", "params": {"what": "call back"}, "reasoning": "Log the call"}
    response, _ = post(remembered, body)
    assert response.json()["error"]["code"] == "out_of_scope"
    grant_apply(agent=agent, action_type=ActionTypeFactory(key="crm.note"))
    response, sql = post(remembered, body)
    assert response.status_code == 201, response.content
    assert looked_up(sql)
    # Only the stale refusal was audited; the refusal the memory would have given is not.
    assert AuditEvent.objects.filter(event="decision.out_of_scope").count() == 1


def test_a_new_behaviour_version_routes_the_next_submission(remembered, agent, email_body):
    version = behaviour_version_create(
        agent=agent,
        policy=[{"id": "deny-email", "action": "email.send", "outcome": "deny", "reason": "No"}],
    )
    behaviour_version_activate(version=version)
    response, sql = post(remembered, email_body)
    assert response.status_code == 201
    assert response.json()["status"] == "denied"
    assert looked_up(sql)


def test_an_agent_that_anomaly_rules_watch_is_read_afresh_each_time(remembered, agent, email_body):
    rules = [{"rule": "new_destination", "params": ["to"], "action": "force_review"}]
    assert anomaly_rules_set(target=agent, rules=rules)
    for _ in range(2):
        response, sql = post(remembered, email_body)
        assert response.status_code == 201
        assert looked_up(sql)
    assert AgentKey.objects.get(agent=agent).key_hash not in REMEMBERED.rows


def test_a_stale_submission_counts_once_against_the_hourly_limit(
    api,
    agent,
    email_body,
    counters,  # noqa: F811
):
    grant = agent.grants.get(action_type__key="email.send")
    grant_apply(agent=agent, action_type=grant.action_type, limit_per_hour=3)
    assert post(api, email_body)[0].status_code == 201
    assert post(api, email_body)[0].status_code == 201
    # Any change to the agent's row makes the remembered one stale.
    Agent.objects.filter(pk=agent.pk).update(name="Renamed elsewhere")
    response, sql = post(api, email_body)
    assert response.status_code == 201
    assert looked_up(sql)
    assert _count(counters) == 3
    assert post(api, email_body)[0].status_code == 429
    assert Decision.objects.count() == 3


def test_a_change_to_the_key_row_elsewhere_is_seen(remembered, agent, email_body):
    AgentKey.objects.filter(agent=agent).update(label="relabelled")
    response, sql = post(remembered, email_body)
    assert response.status_code == 201
    assert looked_up(sql)
    response, sql = post(remembered, email_body)
    assert not looked_up(sql)


def test_recording_its_use_does_not_make_it_stale(remembered, agent, email_body, monkeypatch):
    # As when a minute has passed since the key's last recorded use.
    monkeypatch.setattr("agents.auth.LAST_USED_GRANULARITY", timedelta(0))
    before = AgentKey.objects.get(agent=agent).last_used_at
    response, sql = post(remembered, email_body)
    assert response.status_code == 201
    assert [statement for statement in sql if statement.startswith("UPDATE")]
    assert not looked_up(sql)
    assert AgentKey.objects.get(agent=agent).last_used_at > before
