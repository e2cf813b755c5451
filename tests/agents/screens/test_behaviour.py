import json
import threading
import time
from datetime import timedelta

import pytest
import time_machine
from django.db import connection, transaction
from django.utils import timezone
from rest_framework.test import APIClient

from agents.models import Alert, BehaviourVersion
from agents.services import agent_key_issue, behaviour_version_activate, behaviour_version_create
from approvals import selectors, services
from audit.models import AuditEvent
from tests.factories import (
    ActionTypeFactory,
    AgentFactory,
    GrantFactory,
    UserFactory,
    agent_admin,
    auditor,
    reviewer,
)

pytestmark = pytest.mark.django_db

V1 = [
    {"id": "big-deny", "action": "refund.issue", "when": "params.amount > 500", "outcome": "deny"},
    {"id": "refunds", "action": "refund.issue", "outcome": "review"},
]
V2 = [
    {"id": "refunds", "action": "refund.issue", "outcome": "review", "approvals": 1},
]


@pytest.fixture
def world():
    agent = AgentFactory(slug="support", name="Support agent", owner=UserFactory(username="own"))
    action = ActionTypeFactory(
        key="refund.issue", summary_template="Refund {amount}", params_schema={"type": "object"}
    )
    # A reviewer's edit passes the agent's gate, so the agent holds the grant.
    GrantFactory(agent=agent, action_type=action)
    v1 = behaviour_version_create(
        agent=agent,
        instructions="Be kind.\nRefund fairly.",
        settings={"temperature": 0.2},
        policy=V1,
        note="first",
    )
    behaviour_version_activate(version=v1)
    agent.refresh_from_db()
    return {"agent": agent, "action": action, "v1": v1}


def submit(world, amount):
    world["agent"].refresh_from_db()
    return services.decision_create(
        agent=world["agent"],
        action_type=world["action"],
        params={"amount": amount},
        reasoning="Customer asked.",
    )


@pytest.fixture
def admin(client):
    user = agent_admin(username="ada")
    client.force_login(user)
    return user


URLS = [
    ("get", "/agents/"),
    ("get", "/agents/support/"),
    ("get", "/agents/support/versions/new/"),
    ("post", "/agents/support/versions/new/"),
    ("get", "/agents/support/versions/diff/"),
    ("get", "/agents/support/versions/1/activate/"),
    ("post", "/agents/support/versions/1/activate/"),
    ("get", "/agents/support/feedback.jsonl"),
]


@pytest.mark.parametrize("make_user", [reviewer, auditor])
@pytest.mark.parametrize(("method", "url"), URLS)
def test_reviewers_and_auditors_cannot_manage_behaviour(client, world, make_user, method, url):
    client.force_login(make_user())
    response = getattr(client, method)(
        url, {"reason": "x", "note": "n", "policy": "[]", "settings": "{}"}
    )
    assert response.status_code == 403
    assert BehaviourVersion.objects.count() == 1


@pytest.mark.parametrize(("method", "url"), URLS)
def test_anonymous_users_are_sent_to_login(client, world, method, url):
    response = getattr(client, method)(url)
    assert response.status_code == 302 and response.url.startswith("/accounts/login/")


def test_wrong_methods_and_unknown_things(client, world, admin):
    assert client.post("/agents/").status_code == 405
    assert client.post("/agents/support/feedback.jsonl").status_code == 405
    assert client.get("/agents/nobody/").status_code == 404
    assert client.get("/agents/support/versions/9/activate/").status_code == 404
    assert client.get("/agents/support/versions/diff/", {"a": "x"}).status_code == 404


def test_a_new_version_starts_from_the_active_one(client, world, admin):
    response = client.get("/agents/support/versions/new/")
    form = response.context["form"]
    assert form.initial["instructions"] == "Be kind.\nRefund fairly."
    assert "big-deny" in form.initial["policy"]


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ("- {id: r, when: 'params.amount >', outcome: review}", "policy[0].when: CEL syntax"),
        ("- {id: r, outcome: maybe}", "policy[0].outcome"),
        ("- {id: r, outcome: review, colour: red}", "policy[0].colour: unknown key"),
        ("{not: a list", "Not valid YAML"),
    ],
)
def test_a_new_version_is_validated_like_apply_governance(client, world, admin, policy, message):
    response = client.post(
        "/agents/support/versions/new/",
        {"policy": policy, "settings": "{}", "note": "n", "action": "save"},
    )
    assert response.status_code == 400
    assert message in response.content.decode()
    assert BehaviourVersion.objects.count() == 1


def test_allow_on_an_irreversible_action_is_refused(client, world, admin):
    ActionTypeFactory(key="email.send", irreversible=True)
    response = client.post(
        "/agents/support/versions/new/",
        {
            "policy": "- {id: yolo, action: email.send, outcome: allow}",
            "settings": "{}",
            "note": "n",
            "action": "save",
        },
    )
    assert response.status_code == 400
    assert "allow is not permitted on irreversible" in response.content.decode()


def test_saving_creates_an_immutable_inactive_version(client, world, admin):
    response = client.post(
        "/agents/support/versions/new/",
        {
            "instructions": "Be kinder.",
            "settings": '{"temperature": 0.1}',
            "policy": json.dumps(V2),
            "note": "Loosen refunds",
            "action": "save",
        },
    )
    assert response.status_code == 302
    assert response.url == "/agents/support/versions/2/activate/"
    v2 = BehaviourVersion.objects.get(agent=world["agent"], number=2)
    assert (v2.note, v2.created_by.username, v2.policy) == ("Loosen refunds", "ada", V2)
    world["agent"].refresh_from_db()
    assert world["agent"].active_behaviour == world["v1"]
    world["v1"].refresh_from_db()
    assert world["v1"].policy == V1


def test_the_diff_shows_instructions_settings_and_rules(client, world, admin):
    behaviour_version_create(
        agent=world["agent"],
        instructions="Be kind.\nRefund generously.",
        settings={"temperature": 0.5, "tone": "warm"},
        policy=V2,
        note="x",
    )
    response = client.get("/agents/support/versions/diff/", {"a": 1, "b": 2})
    diff = response.context["diff"]
    assert ("changed", "Refund fairly.", "Refund generously.") in diff.instructions
    assert ("changed", "temperature", "0.2", "0.5") in diff.settings
    assert ("added", "tone", "", '"warm"') in diff.settings
    kinds = {(kind, rule_id) for kind, rule_id, _ in diff.rules}
    assert ("removed", "big-deny") in kinds and ("changed", "refunds") in kinds


def test_the_dry_run_counts_decisions_that_would_route_differently(client, world, admin):
    for amount in (100, 200, 900, 950):
        submit(world, amount)  # v1: 2 review, 2 deny
    response = client.post(
        "/agents/support/versions/new/",
        {"policy": json.dumps(V2), "settings": "{}", "note": "n", "action": "dry_run", "days": 7},
    )
    dry = response.context["dry_run"]
    assert (dry.replayed, dry.changed) == (4, 2)
    assert dry.transitions == {("deny", "review"): 2}
    assert len(dry.examples[("deny", "review")]) == 2
    assert BehaviourVersion.objects.count() == 1
    assert "2 of 4 decisions would be routed differently" in response.content.decode()


def test_activation_changes_the_etag_and_rollback_reroutes_pending(client, world, admin):
    key = agent_key_issue(agent=world["agent"]).secret
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    first = api.get("/api/v1/behaviour/")
    etag = first["ETag"]
    assert api.get("/api/v1/behaviour/", HTTP_IF_NONE_MATCH=etag).status_code == 304

    v2 = behaviour_version_create(agent=world["agent"], policy=V2, note="loosen")
    with time_machine.travel(timezone.now() + timedelta(seconds=5)):
        client.post("/agents/support/versions/2/activate/", {"reason": "Try it"})
    world["agent"].refresh_from_db()
    assert world["agent"].active_behaviour == v2
    after = api.get("/api/v1/behaviour/", HTTP_IF_NONE_MATCH=etag)
    assert after.status_code == 200 and after.json()["version"] == 2

    small, big = submit(world, 100), submit(world, 900)  # both pending under v2
    assert (small.behaviour_version, big.behaviour_version) == (2, 2)
    page = client.get("/agents/support/versions/1/activate/")
    assert page.context["rollback"] and page.context["pending_left"] == 2
    with time_machine.travel(timezone.now() + timedelta(seconds=10)):
        response = client.post(
            "/agents/support/versions/1/activate/",
            {"reason": "v2 refunds too much", "reroute": "on"},
        )
    assert response.status_code == 302
    world["agent"].refresh_from_db()
    assert world["agent"].active_behaviour == world["v1"]
    assert api.get("/api/v1/behaviour/", HTTP_IF_NONE_MATCH=after["ETag"]).json()["version"] == 1
    small.refresh_from_db()
    big.refresh_from_db()
    assert (small.status, small.policy_rule, small.behaviour_version) == ("pending", "refunds", 2)
    assert (big.status, big.behaviour_version) == ("cancelled", 2)
    assert big.status_reason.startswith("Cancelled on rollback to v1")
    rollback = AuditEvent.objects.get(event="behaviour_version.rolled_back")
    assert (rollback.actor_label, rollback.data["reason"]) == ("ada", "v2 refunds too much")
    assert AuditEvent.objects.filter(
        event="decision.cancelled_on_rollback", target_id=str(big.pk)
    ).exists()
    # v1 routes the small refund as v2 did: it is left alone, not counted as re-routed
    # (issue 13, item 11).
    assert not AuditEvent.objects.filter(
        event="decision.rerouted", target_id=str(small.pk)
    ).exists()
    assert BehaviourVersion.objects.filter(agent=world["agent"]).count() == 2


def test_activation_needs_a_reason(client, world, admin):
    behaviour_version_create(agent=world["agent"], policy=V2, note="x")
    response = client.post("/agents/support/versions/2/activate/", {"reason": ""})
    assert response.status_code == 400
    world["agent"].refresh_from_db()
    assert world["agent"].active_behaviour == world["v1"]


def test_metrics_per_version_on_known_counts(world):
    people = [reviewer() for _ in range(3)]
    created = timezone.now()
    decisions = [submit(world, 10 + i) for i in range(6)]
    with time_machine.travel(created + timedelta(minutes=10)):
        services.decision_approve(decision=decisions[0], reviewer=people[0])
        services.decision_approve(
            decision=decisions[1], reviewer=people[0], approved_params={"amount": 5}
        )
        services.decision_reject(
            decision=decisions[2], reviewer=people[0], reason="Too much", tags=["wrong amount"]
        )
    with time_machine.travel(created + timedelta(minutes=30)):
        services.decision_reject(
            decision=decisions[3],
            reviewer=people[1],
            reason="too  much",
            tags=["wrong amount", "policy"],
        )
    services.decision_expire(decision=decisions[4])
    submit(world, 900)  # denied
    [m] = selectors.version_metrics(agent=world["agent"])
    assert (
        m["version"],
        m["decisions"],
        m["approved"],
        m["rejected"],
        m["edited"],
        m["expired"],
        m["denied"],
        m["pending"],
    ) == (1, 7, 2, 2, 1, 1, 1, 1)
    assert m["rejection_rate"] == 0.5
    assert 10 * 60 <= m["median_seconds"] <= 30 * 60
    assert m["top_tags"][0] == ("wrong amount", 2)
    assert m["top_reasons"][0][1] == 1


def test_a_regressed_version_raises_one_alert_suggesting_rollback(world, settings):
    settings.AISPM_REGRESSION_MIN_DECISIONS = 4
    people = [reviewer() for _ in range(2)]
    for i in range(4):
        services.decision_approve(decision=submit(world, i + 1), reviewer=people[0])
    v2 = behaviour_version_create(agent=world["agent"], policy=V2, note="x")
    behaviour_version_activate(version=v2)
    for i in range(5):
        services.decision_reject(decision=submit(world, i + 1), reviewer=people[1], reason="no")
    alert = Alert.objects.get(kind="behaviour_regression")
    assert alert.evidence["rollback_url"] == "/agents/support/versions/1/activate/"
    assert "Consider rolling back" in alert.message


def test_feedback_export_is_json_lines_filtered_by_version(client, world, admin):
    kept = submit(world, 10)
    services.decision_reject(
        decision=kept, reviewer=reviewer(), reason="Wrong order\r\n=1+1", tags=["not needed"]
    )
    v2 = behaviour_version_create(agent=world["agent"], policy=V2, note="x")
    behaviour_version_activate(version=v2)
    services.decision_approve(
        decision=submit(world, 20), reviewer=reviewer(), approved_params={"amount": 15}
    )
    response = client.get("/agents/support/feedback.jsonl", {"version": 1})
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert len(lines) == 1
    row = json.loads(lines[0])
    assert (row["decision_id"], row["verdict"], row["reason"]) == (
        str(kept.pk),
        "reject",
        "Wrong order\r\n=1+1",
    )
    assert row["original_params"] == {"amount": 10} and row["approved_params"] is None
    both = b"".join(client.get("/agents/support/feedback.jsonl").streaming_content)
    edited = json.loads(both.decode().splitlines()[1])
    assert edited["approved_params"] == {"amount": 15} and edited["behaviour_version"] == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_feedback_cursor_never_skips_reviews_that_commit_late(world):
    key = agent_key_issue(agent=world["agent"]).secret
    decisions = [submit(world, i + 1) for i in range(24)]
    people = [reviewer() for _ in range(4)]
    seen, cursor, stop = [], None, threading.Event()

    def review(worker: int):
        try:
            for index in range(worker, len(decisions), 4):
                with transaction.atomic():
                    services.decision_approve(decision=decisions[index], reviewer=people[worker])
                    time.sleep(0.02 * ((index * 7) % 5))  # commit out of id order
        finally:
            connection.close()

    def poll():
        nonlocal cursor
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        deadline = None
        try:
            while True:
                response = api.get("/api/v1/feedback/", {"after": cursor} if cursor else {})
                assert response.status_code == 200, response.content
                page = response.json()
                seen.extend(item["decision_id"] for item in page["results"])
                cursor = page["next"] or cursor
                if stop.is_set():
                    # A transaction elsewhere on the server can hold reviews back for a
                    # while (never skip them): keep polling until all arrive, bounded.
                    deadline = deadline or time.monotonic() + 30
                    if len(seen) >= len(decisions) or time.monotonic() > deadline:
                        return
                time.sleep(0.005)
        finally:
            connection.close()

    poller = threading.Thread(target=poll)
    poller.start()
    workers = [threading.Thread(target=review, args=(n,)) for n in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    stop.set()
    poller.join(timeout=30)
    assert sorted(seen) == sorted(str(d.pk) for d in decisions)
    assert len(seen) == len(set(seen))
