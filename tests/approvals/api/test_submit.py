import json

import pytest
from rest_framework.test import APIClient

from agents.models import Agent
from agents.services import grant_apply, grant_remove
from approvals.models import Decision
from audit.models import AuditEvent
from tests.factories import ActionTypeFactory, AgentFactory, GrantFactory

URL = "/api/v1/decisions/"
pytestmark = pytest.mark.django_db


def _error(response, status, code):
    assert response.status_code == status, response.content
    body = response.json()
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


def test_it_creates_a_pending_decision_with_its_route(api, email_body):
    response = api.post(URL, email_body, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "pending"
    assert body["action"] == "email.send"
    assert body["summary"] == "Email to lead@example.com: Pricing"
    assert body["policy"] == {
        "outcome": "review",
        "rule": "follow-ups",
        "explanation": "Outbound email is reviewed",
    }
    assert body["required_approvals"] == 1
    assert body["behaviour_version"] == 1
    assert body["reviews"] == []
    assert body["release"]["status"] is None
    decision = Decision.objects.get(pk=body["id"])
    assert (decision.expires_at - decision.created_at).total_seconds() == 8 * 3600
    assert AuditEvent.objects.filter(event="decision.submitted", target_id=body["id"]).exists()


def test_policy_routes_allow_deny_and_two_approvers(api, email_body):
    deny = dict(email_body, params=dict(email_body["params"], to=["ceo@competitor.example"]))
    assert api.post(URL, deny, format="json").json()["status"] == "denied"
    bulk = dict(
        email_body, params=dict(email_body["params"], to=[f"l{i}@example.com" for i in range(12)])
    )
    body = api.post(URL, bulk, format="json").json()
    assert (body["status"], body["required_approvals"]) == ("pending", 2)
    small = {
        "action": "payment.transfer",
        "params": {"amount": 10, "to": "Acme"},
        "reasoning": "Invoice due",
    }
    body = api.post(URL, small, format="json").json()
    assert body["status"] == "approved"
    assert body["release"]["status"] == "queued"
    big = dict(small, params={"amount": 5000, "to": "Acme"})
    body = api.post(URL, big, format="json").json()
    assert (body["status"], body["policy"]["rule"], body["required_approvals"]) == (
        "pending",
        "two-approvers-over-1000",
        2,
    )


def test_identity_comes_from_the_key_not_the_body(api, email_body):
    other = AgentFactory(slug="other")
    response = api.post(URL, dict(email_body, agent=str(other.pk)), format="json")
    _error(response, 400, "invalid")
    body = api.post(URL, email_body, format="json").json()
    assert Decision.objects.get(pk=body["id"]).agent.slug == "sdr-agent"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer garbage",
        "Basic dXNlcjpwYXNz",
        "Token aispm_x_y",
        "Bearer aispm_" + "A" * 32 + "_000000",
    ],
)
def test_missing_or_garbage_keys_are_unauthenticated(agent, email_body, header):
    client = APIClient()
    if header is not None:
        client.credentials(HTTP_AUTHORIZATION=header)
    response = client.post(URL, email_body, format="json")
    _error(response, 401, "unauthenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_bad_checksum_is_refused_without_a_query(agent_key, django_assert_num_queries):
    body, checksum = agent_key.rsplit("_", 1)
    wrong = f"{body}_{'0' * 6 if checksum != '0' * 6 else '1' * 6}"
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {wrong}")
    with django_assert_num_queries(0):
        response = client.get(URL)
    _error(response, 401, "unauthenticated")


def test_revoked_and_expired_keys_are_refused(agent, agent_key, email_body):
    from datetime import timedelta

    from django.utils import timezone

    key = agent.keys.get()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {agent_key}")
    type(key).objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    _error(client.get(URL), 401, "unauthenticated")
    type(key).objects.filter(pk=key.pk).update(expires_at=None, revoked_at=timezone.now())
    _error(client.get(URL), 401, "unauthenticated")


def test_last_used_is_written_at_most_once_a_minute(agent, api):
    import time_machine

    key = agent.keys.get()
    with time_machine.travel("2026-11-26 10:00:00Z", tick=False):
        api.get(URL)
        key.refresh_from_db()
        first = key.last_used_at
        assert first is not None
    with time_machine.travel("2026-11-26 10:00:30Z", tick=False):
        api.get(URL)
        key.refresh_from_db()
        assert key.last_used_at == first
    with time_machine.travel("2026-11-26 10:01:30Z", tick=False):
        api.get(URL)
        key.refresh_from_db()
        assert key.last_used_at > first


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('{"action": "email.send", "params": {}', "body"),
        ("[1, 2, 3]", "body"),
        ('"a string"', "body"),
        (
            '{"action": "email.send", "params": {"to": ["a@b.example"], "subject": "s"}}',
            "reasoning",
        ),
        ('{"action": "email.send", "params": [], "reasoning": "r"}', "params"),
        ('{"action": "email.send", "params": "x", "reasoning": "r"}', "params"),
        (
            '{"action": "email.send", "params": {}, "reasoning": "r", "confidence": 1.5}',
            "confidence",
        ),
        (
            '{"action": "email.send", "params": {}, "reasoning": "r", "confidence": -0.1}',
            "confidence",
        ),
        (
            '{"action": "email.send", "params": {}, "reasoning": "r", "confidence": "0.5"}',
            "confidence",
        ),
        ('{"action": "email.send", "params": {}, "reasoning": "r", "confidence": NaN}', "body"),
        ('{"action": "email.send", "params": {}, "reasoning": "r", "evidence": [1]}', "evidence"),
        ('{"action": "email.send", "params": {"a": "\\u0000"}, "reasoning": "r"}', "params"),
        (
            '{"action": "email.send", "params": {"a": 99999999999999999999999}, "reasoning": "r"}',
            "params",
        ),
        (
            '{"action": "email.send", "params": ' + "[" * 5000 + "]" * 5000 + ', "reasoning": "r"}',
            "body",
        ),
        (
            '{"action": "email.send", "params": {"a": '
            + '{"b":' * 40
            + "1"
            + "}" * 40
            + '}, "reasoning": "r"}',
            "params",
        ),
        ('{"action": "' + "x" * 101 + '", "params": {}, "reasoning": "r"}', "action"),
        (
            '{"action": "email.send", "params": {}, "reasoning": "r", "idempotency_key": "'
            + "k" * 256
            + '"}',
            "idempotency_key",
        ),
    ],
)
def test_malformed_bodies_are_invalid(api, raw, field):
    response = api.generic("POST", URL, raw, content_type="application/json")
    error = _error(response, 400, "invalid")
    if field != "body":
        assert field in error["details"], error


def test_a_non_json_content_type_is_refused(api):
    response = api.generic(
        "POST", URL, "action=x", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


def test_a_body_over_256_kib_is_too_large(api, email_body):
    big = dict(email_body, reasoning="x" * (256 * 1024))
    _error(api.post(URL, big, format="json"), 413, "too_large")
    assert not Decision.objects.exists()


def test_params_are_checked_against_the_schema_with_exact_paths(api, email_body):
    params = {"to": ["not-an-email", "ok@example.com"], "subject": "s" * 301, "extra": 1}
    error = _error(api.post(URL, dict(email_body, params=params), format="json"), 400, "invalid")
    assert "params.to[0]" in error["details"]
    assert "params.subject" in error["details"]
    assert any("body" in m for m in error["details"]["params"])
    assert any("extra" in m for m in error["details"]["params"])


def test_unknown_and_ungranted_actions_are_out_of_scope_and_audited(api, agent, email_body):
    _error(
        api.post(URL, dict(email_body, action="nuke.everything"), format="json"),
        403,
        "out_of_scope",
    )
    other_agents_action = ActionTypeFactory(key="crm.update")
    GrantFactory(agent=AgentFactory(slug="other-agent"), action_type=other_agents_action)
    _error(
        api.post(URL, dict(email_body, action="crm.update", params={}), format="json"),
        403,
        "out_of_scope",
    )
    events = AuditEvent.objects.filter(event="decision.out_of_scope", target_id=str(agent.pk))
    assert sorted(e.data["action"] for e in events) == ["crm.update", "nuke.everything"]
    assert not Decision.objects.exists()


def test_a_false_constraint_is_out_of_scope_naming_it(api, email_body):
    params = dict(email_body["params"], to=[f"l{i}@example.com" for i in range(51)])
    error = _error(
        api.post(URL, dict(email_body, params=params), format="json"), 403, "out_of_scope"
    )
    assert "size(params.to) <= 50" in error["message"]


def test_a_suspended_agent_is_refused(api, agent, email_body):
    Agent.objects.filter(pk=agent.pk).update(status=Agent.Status.SUSPENDED)
    _error(api.post(URL, email_body, format="json"), 403, "agent_suspended")


def test_the_hourly_limit_answers_429_with_retry_after(api, agent, email_body):
    grant = agent.grants.get(action_type__key="email.send")
    grant_apply(
        agent=agent, action_type=grant.action_type, limit_per_hour=2, constraint=grant.constraint
    )
    for _ in range(2):
        assert api.post(URL, email_body, format="json").status_code == 201
    response = api.post(URL, email_body, format="json")
    _error(response, 429, "rate_limited")
    assert 1 <= int(response["Retry-After"]) <= 3600


def test_the_same_idempotency_key_and_body_return_the_original(api, email_body):
    body = dict(email_body, idempotency_key="abc-1")
    first = api.post(URL, body, format="json")
    second = api.post(URL, body, format="json")
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert Decision.objects.count() == 1


def test_the_idempotency_key_may_come_in_a_header(api, email_body):
    first = api.post(URL, email_body, format="json", HTTP_IDEMPOTENCY_KEY="hdr-1")
    second = api.post(URL, dict(email_body, idempotency_key="hdr-1"), format="json")
    assert second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    response = api.post(
        URL, dict(email_body, idempotency_key="other"), format="json", HTTP_IDEMPOTENCY_KEY="hdr-1"
    )
    _error(response, 400, "invalid")


def test_a_reused_key_with_another_body_is_a_conflict(api, email_body):
    api.post(URL, dict(email_body, idempotency_key="abc-2"), format="json")
    changed = dict(email_body, idempotency_key="abc-2", reasoning="Something else")
    _error(api.post(URL, changed, format="json"), 409, "conflict")


def test_a_replay_returns_the_original_even_after_the_grant_is_gone(api, agent, email_body):
    body = dict(email_body, idempotency_key="abc-3")
    original = api.post(URL, body, format="json").json()
    for grant in agent.grants.all():
        grant_remove(grant=grant)
    replay = api.post(URL, body, format="json")
    assert replay.status_code == 200
    assert replay.json()["id"] == original["id"]


def test_hostile_text_is_stored_verbatim_and_returned_as_json(api, email_body):
    hostile = "<script>alert(1)</script>\r\n=cmd|' /C calc'!A0 @SUM(1) +1 -1"
    body = dict(email_body, reasoning=hostile, evidence={"html": '<b hx-get="/admin/">x</b>'})
    created = api.post(URL, body, format="json")
    assert created["Content-Type"] == "application/json"
    decision = Decision.objects.get(pk=created.json()["id"])
    assert decision.reasoning == hostile
    assert json.loads(created.content)["id"] == str(decision.pk)


def test_a_removed_grant_takes_effect_on_the_next_request(api, agent, email_body):
    assert api.post(URL, email_body, format="json").status_code == 201
    grant_remove(grant=agent.grants.get(action_type__key="email.send"))
    _error(api.post(URL, email_body, format="json"), 403, "out_of_scope")


def test_a_changed_schema_takes_effect_on_the_next_request(api, agent, email_body):
    from agents.services import action_type_apply

    assert api.post(URL, email_body, format="json").status_code == 201
    action = agent.grants.get(action_type__key="email.send").action_type
    action_type_apply(
        key=action.key,
        name=action.name,
        irreversible=True,
        params_schema=dict(action.params_schema, required=["to", "subject", "body", "cc"]),
    )
    error = _error(api.post(URL, email_body, format="json"), 400, "invalid")
    assert any("cc" in message for message in error["details"]["params"])


def test_a_replay_after_a_review_returns_the_reviews(api, email_body):
    from approvals import services
    from tests.factories import reviewer

    body = dict(email_body, idempotency_key="abc-review")
    created = api.post(URL, body, format="json").json()
    services.decision_reject(
        decision=Decision.objects.get(pk=created["id"]),
        reviewer=reviewer(username="rita"),
        reason="Wrong lead",
    )
    replay = api.post(URL, body, format="json").json()
    assert replay["status"] == "rejected"
    assert [(r["reviewer"], r["comment"]) for r in replay["reviews"]] == [("rita", "Wrong lead")]
