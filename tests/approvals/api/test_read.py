import uuid

import pytest
from rest_framework.test import APIClient

from agents.services import agent_key_issue
from approvals import services
from approvals.models import Decision
from tests.factories import AgentFactory, BehaviourVersionFactory, reviewer

URL = "/api/v1/decisions/"
pytestmark = pytest.mark.django_db


def _submit(api, body, **extra):
    response = api.post(URL, dict(body, **extra), format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_an_agent_can_poll_its_decision(api, email_body):
    created = _submit(api, email_body)
    response = api.get(f"{URL}{created['id']}/")
    assert response.status_code == 200
    assert response.json() == created


def test_another_agents_decision_and_malformed_ids_are_not_found(api, email_body):
    created = _submit(api, email_body)
    other = AgentFactory(slug="other")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {agent_key_issue(agent=other).secret}")
    for path in [f"{URL}{created['id']}/", f"{URL}{created['id']}/cancel/"]:
        method = client.post if path.endswith("cancel/") else client.get
        response = method(path)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    for bad in ["not-a-uuid", "123", str(uuid.uuid4()), "%00"]:
        response = api.get(f"{URL}{bad}/")
        assert response.status_code == 404, bad
        assert response.json()["error"]["code"] == "not_found"
    assert Decision.objects.get(pk=created["id"]).status == "pending"


def test_the_list_is_newest_first_with_a_cursor_and_a_status_filter(api, email_body):
    ids = [_submit(api, email_body, idempotency_key=f"k{i}")["id"] for i in range(55)]
    denied = dict(email_body, params=dict(email_body["params"], to=["x@competitor.example"]))
    denied_id = _submit(api, denied)["id"]
    first = api.get(URL).json()
    assert [d["id"] for d in first["results"]][:2] == [denied_id, ids[-1]]
    assert len(first["results"]) == 50
    second = api.get(first["next"]).json()
    seen = [d["id"] for d in first["results"] + second["results"]]
    assert sorted(seen) == sorted([*ids, denied_id])
    assert second["next"] is None
    only_denied = api.get(URL, {"status": "denied"}).json()["results"]
    assert [d["id"] for d in only_denied] == [denied_id]


def test_a_bad_status_or_cursor_is_invalid(api):
    for params in [{"status": "nope"}, {"cursor": "garbage"}]:
        response = api.get(URL, params)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid"


def test_cancel_moves_pending_to_cancelled_and_conflicts_otherwise(api, agent, email_body):
    created = _submit(api, email_body)
    response = api.post(f"{URL}{created['id']}/cancel/")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    again = api.post(f"{URL}{created['id']}/cancel/")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "conflict"
    assert Decision.objects.get(pk=created["id"]).status == "cancelled"


def test_cancel_needs_post(api, email_body):
    created = _submit(api, email_body)
    response = api.get(f"{URL}{created['id']}/cancel/")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_reviews_show_on_the_decision_and_in_feedback(api, agent, email_body):
    created = _submit(api, email_body)
    rita = reviewer(username="rita")
    services.decision_reject(
        decision=Decision.objects.get(pk=created["id"]),
        reviewer=rita,
        reason="Wrong recipient: this lead unsubscribed.",
        tags=["wrong recipient"],
    )
    body = api.get(f"{URL}{created['id']}/").json()
    assert body["status"] == "rejected"
    [review] = body["reviews"]
    assert review["verdict"] == "reject"
    assert review["comment"] == "Wrong recipient: this lead unsubscribed."
    assert review["reviewer"] == "rita"
    feedback = api.get("/api/v1/feedback/").json()
    [item] = feedback["results"]
    assert item["decision_id"] == created["id"]
    assert item["comment"] == "Wrong recipient: this lead unsubscribed."
    assert item["tags"] == ["wrong recipient"]
    assert api.get("/api/v1/feedback/", {"after": feedback["next"]}).json()["results"] == []


def test_the_feedback_cursor_continues_where_it_left_off(api, email_body):
    ids = [_submit(api, email_body, idempotency_key=f"f{i}")["id"] for i in range(3)]
    page = api.get("/api/v1/feedback/").json()
    assert page == {"results": [], "next": None}
    services.decision_approve(decision=Decision.objects.get(pk=ids[0]), reviewer=reviewer())
    page = api.get("/api/v1/feedback/").json()
    cursor = page["next"]
    services.decision_approve(decision=Decision.objects.get(pk=ids[1]), reviewer=reviewer())
    later = api.get("/api/v1/feedback/", {"after": cursor}).json()
    assert [item["decision_id"] for item in later["results"]] == [ids[1]]
    bad = api.get("/api/v1/feedback/", {"after": "!!"})
    assert bad.status_code == 400


def test_behaviour_has_an_etag_and_answers_304(api, agent):
    response = api.get("/api/v1/behaviour/")
    assert response.status_code == 200
    body = response.json()
    assert body["version"] == 1
    assert body["policy"][0]["id"] == "deny-competitors"
    etag = response["ETag"]
    assert api.get("/api/v1/behaviour/", HTTP_IF_NONE_MATCH=etag).status_code == 304
    agent.active_behaviour = BehaviourVersionFactory(agent=agent, number=2, policy=[])
    agent.save()
    changed = api.get("/api/v1/behaviour/", HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200
    assert changed["ETag"] != etag
    assert changed.json()["version"] == 2


def test_behaviour_without_an_active_version_is_not_found(agent):
    bare = AgentFactory(slug="bare")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {agent_key_issue(agent=bare).secret}")
    response = client.get("/api/v1/behaviour/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_the_hand_built_representation_matches_the_documented_serializer(api, email_body):
    from approvals.api.representation import DecisionOut, decision_representation

    created = _submit(api, email_body)
    decision = Decision.objects.get(pk=created["id"])
    services.decision_approve(decision=decision, reviewer=reviewer(), comment="ok")
    services.decision_release_claim(decision=decision)
    decision = Decision.objects.prefetch_related("reviews__reviewer").get(pk=created["id"])
    assert decision_representation(decision) == DecisionOut(decision).data


def test_the_fast_rendering_matches_drfs_generic_walk_of_the_declared_fields(api, email_body):
    from rest_framework import serializers as drf

    from approvals.api.representation import DecisionOut

    created = _submit(api, email_body)
    decision = Decision.objects.get(pk=created["id"])
    services.decision_approve(decision=decision, reviewer=reviewer(), comment="ok")
    services.decision_release_claim(decision=decision)
    decision = Decision.objects.prefetch_related("reviews__reviewer").get(pk=created["id"])
    generic = drf.Serializer.to_representation(DecisionOut(), decision)
    assert generic["reviews"] and generic["release"]["status"] == "releasing"
    assert DecisionOut(decision).data == generic
    assert api.get(f"/api/v1/decisions/{decision.pk}/").json() == generic
