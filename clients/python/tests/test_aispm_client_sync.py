import json

import aispm_client
import httpx
import pytest
from aispm_client import Client, WaitPolicy
from fake_aispm import DECISION_ID, Clock, FakeAispm, decision, error

DECISIONS = "/api/v1/decisions/"
DETAIL = f"/api/v1/decisions/{DECISION_ID}/"
KEY = "aispm_testkey_abc"


@pytest.fixture
def fake():
    return FakeAispm()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def client(fake, clock):
    client = Client("http://aispm.test", KEY, transport=httpx.MockTransport(fake.handle))
    client._sleep, client._clock = clock.sleep, clock
    yield client
    client.close()


def test_submit_sends_the_key_and_body_and_returns_a_typed_decision(fake, client):
    fake.on("POST", DECISIONS, httpx.Response(201, json=decision("approved")))

    result = client.submit(
        "payment.transfer",
        {"amount": 50, "to": "acme"},
        "The invoice is due.",
        evidence={"invoice": "INV-1"},
        confidence=0.9,
    )

    assert result.id == DECISION_ID
    assert result.status == "approved" and result.approved
    assert result.created_at.tzinfo is not None
    request = fake.requests[0]
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    body = json.loads(request.content)
    assert body["action"] == "payment.transfer"
    assert body["params"] == {"amount": 50, "to": "acme"}
    assert body["evidence"] == {"invoice": "INV-1"} and body["confidence"] == 0.9
    assert body["idempotency_key"]


def test_base_url_may_already_name_the_api_root(fake):
    fake.on("GET", DETAIL, decision())
    transport = httpx.MockTransport(fake.handle)
    with Client("http://aispm.test/api/v1/", KEY, transport=transport) as client:
        assert client.get(DECISION_ID).pending


def test_a_submission_retried_after_a_timeout_keeps_its_idempotency_key(fake, client):
    fake.on(
        "POST",
        DECISIONS,
        httpx.ReadTimeout("slow"),
        httpx.Response(503, headers={"Retry-After": "2"}),
        httpx.Response(200, json=decision()),
    )

    result = client.submit("payment.transfer", {"amount": 50, "to": "acme"}, "Due.")

    assert result.id == DECISION_ID
    keys = {body["idempotency_key"] for body in fake.bodies()}
    assert len(fake.requests) == 3 and len(keys) == 1


def test_each_logical_submission_gets_its_own_idempotency_key(fake, client):
    fake.on("POST", DECISIONS, httpx.Response(201, json=decision()))
    client.submit("payment.transfer", {"amount": 1, "to": "a"}, "One.")
    client.submit("payment.transfer", {"amount": 1, "to": "a"}, "One.")
    keys = [body["idempotency_key"] for body in fake.bodies()]
    assert keys[0] != keys[1]


def test_a_given_idempotency_key_is_sent_as_is(fake, client):
    fake.on("POST", DECISIONS, httpx.Response(201, json=decision()))
    client.submit("payment.transfer", {"amount": 1, "to": "a"}, "One.", idempotency_key="k-1")
    assert fake.bodies()[0]["idempotency_key"] == "k-1"


@pytest.mark.parametrize(
    ("status", "code", "exception"),
    [
        (400, "invalid", aispm_client.Invalid),
        (401, "unauthenticated", aispm_client.Unauthenticated),
        (403, "out_of_scope", aispm_client.OutOfScope),
        (403, "agent_suspended", aispm_client.AgentSuspended),
        (403, "forbidden", aispm_client.Forbidden),
        (404, "not_found", aispm_client.NotFound),
        (405, "method_not_allowed", aispm_client.MethodNotAllowed),
        (406, "not_acceptable", aispm_client.NotAcceptable),
        (409, "conflict", aispm_client.Conflict),
        (413, "too_large", aispm_client.TooLarge),
        (415, "unsupported_media_type", aispm_client.UnsupportedMediaType),
    ],
)
def test_each_error_code_raises_its_own_exception(fake, client, status, code, exception):
    fake.on("POST", DECISIONS, error(status, code, "Told you.", details={"params": ["Bad."]}))

    with pytest.raises(exception) as raised:
        client.submit("payment.transfer", {}, "Why.")

    assert raised.value.status_code == status
    assert raised.value.code == code
    assert raised.value.message == "Told you."
    assert raised.value.details == {"params": ["Bad."]}
    assert isinstance(raised.value, aispm_client.ApiError)
    assert len(fake.requests) == 1


def test_rate_limited_carries_retry_after_and_is_not_retried(fake, client, clock):
    fake.on("POST", DECISIONS, error(429, "rate_limited", headers={"Retry-After": "120"}))

    with pytest.raises(aispm_client.RateLimited) as raised:
        client.submit("payment.transfer", {}, "Why.")

    assert raised.value.retry_after == 120
    assert len(fake.requests) == 1 and clock.sleeps == []


def test_an_unknown_code_falls_back_to_the_status(fake, client):
    fake.on("GET", DETAIL, error(403, "something_new"))
    with pytest.raises(aispm_client.Forbidden) as raised:
        client.get(DECISION_ID)
    assert raised.value.code == "something_new"


def test_a_server_error_is_retried_with_backoff_then_raised(fake, client, clock):
    fake.on("GET", DETAIL, httpx.Response(502, text="<html>bad gateway</html>"))

    with pytest.raises(aispm_client.ServerError) as raised:
        client.get(DECISION_ID)

    assert raised.value.status_code == 502
    assert len(fake.requests) == 4
    assert clock.sleeps == [0.25, 0.5, 1.0]


def test_a_500_is_not_retried(fake, client):
    fake.on("GET", DETAIL, httpx.Response(500, text="oops"))
    with pytest.raises(aispm_client.ServerError):
        client.get(DECISION_ID)
    assert len(fake.requests) == 1


def test_an_unreachable_server_raises_connection_failed(fake, client):
    fake.on("GET", DETAIL, httpx.ConnectError("refused"))
    with pytest.raises(aispm_client.ConnectionFailed) as raised:
        client.get(DECISION_ID)
    assert isinstance(raised.value.__cause__, httpx.ConnectError)
    assert len(fake.requests) == 4


def test_decision_ids_cannot_escape_the_decision_path(fake, client):
    fake.on("GET", "/api/v1/decisions/..%2Fbehaviour/", error(404, "not_found"))
    with pytest.raises(aispm_client.NotFound):
        client.get("../behaviour")
    assert fake.requests[0].url.raw_path == b"/api/v1/decisions/..%2Fbehaviour/"


def test_wait_polls_with_backoff_until_released(fake, client, clock):
    fake.on(
        "GET",
        DETAIL,
        decision("pending"),
        decision("pending"),
        decision("approved"),
        decision("released", release={"status": "released", "attempts": 1, "result": {}}),
    )

    result = client.wait(DECISION_ID, timeout=60)

    assert result.released
    assert clock.sleeps == [0.5, 0.75, 1.125]


def test_wait_can_stop_at_approval(fake, client):
    fake.on("GET", DETAIL, decision("pending"), decision("approved"), decision("released"))
    result = client.wait(DECISION_ID, policy=WaitPolicy(until_released=False))
    assert result.status == "approved"
    assert len(fake.requests) == 2


def test_wait_backoff_is_capped(fake, client, clock):
    fake.on("GET", DETAIL, *[decision("pending")] * 6, decision("released"))
    client.wait(DECISION_ID, policy=WaitPolicy(interval=1, backoff=3, max_interval=5))
    assert clock.sleeps == [1, 3, 5, 5, 5, 5]


def test_wait_honours_retry_after_while_polling(fake, client, clock):
    fake.on(
        "GET",
        DETAIL,
        decision("pending"),
        error(429, "rate_limited", headers={"Retry-After": "7"}),
        decision("released"),
    )

    assert client.wait(DECISION_ID).released
    assert 7 in clock.sleeps


def test_wait_raises_rejected_with_the_reviewers_reason(fake, client):
    rejected = decision(
        "rejected",
        status_reason="Wrong account: use the EUR one",
        reviews=[
            {
                "verdict": "reject",
                "comment": "Wrong account: use the EUR one",
                "tags": [],
                "reviewer": "rita",
                "at": "2026-11-30T12:01:00Z",
            }
        ],
    )
    fake.on("GET", DETAIL, decision("pending"), rejected)

    with pytest.raises(aispm_client.Rejected) as raised:
        client.wait(DECISION_ID)

    assert raised.value.reason == "Wrong account: use the EUR one"
    assert raised.value.reviewer == "rita"
    assert raised.value.decision.status == "rejected"
    assert isinstance(raised.value, aispm_client.NotApproved)


def test_wait_on_a_denied_submission_raises_denied_without_polling(fake, client):
    denied = decision(
        "denied", policy={"outcome": "deny", "rule": "no", "explanation": "Never pay acme"}
    )
    fake.on("POST", DECISIONS, httpx.Response(201, json=denied))

    submitted = client.submit("payment.transfer", {"amount": 1, "to": "acme"}, "Why.")
    assert submitted.status == "denied"
    with pytest.raises(aispm_client.Denied) as raised:
        client.wait(submitted)

    assert raised.value.reason == "Never pay acme"
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    ("status", "exception"),
    [
        ("expired", aispm_client.Expired),
        ("cancelled", aispm_client.Cancelled),
        ("blocked", aispm_client.Blocked),
        ("failed", aispm_client.ReleaseFailed),
    ],
)
def test_wait_raises_for_every_unhappy_ending(fake, client, status, exception):
    fake.on("GET", DETAIL, decision(status, status_reason="because"))
    with pytest.raises(exception) as raised:
        client.wait(DECISION_ID)
    assert raised.value.reason == "because"


def test_wait_times_out_with_the_last_decision_and_leaves_it_pending(fake, client, clock):
    fake.on("GET", DETAIL, decision("pending"))

    with pytest.raises(aispm_client.WaitTimeout) as raised:
        client.wait(DECISION_ID, timeout=5)

    assert isinstance(raised.value, TimeoutError)
    assert raised.value.decision.pending
    assert sum(clock.sleeps) == pytest.approx(5)
    assert all(r.method == "GET" for r in fake.requests)


def test_wait_cancels_on_timeout_when_the_policy_says_so(fake, client):
    fake.on("GET", DETAIL, decision("pending"))
    fake.on("POST", DETAIL + "cancel/", decision("cancelled"))

    with pytest.raises(aispm_client.WaitTimeout) as raised:
        client.wait(DECISION_ID, policy=WaitPolicy(timeout=2, cancel_on_timeout=True))

    assert raised.value.decision.status == "cancelled"


def test_a_decision_approved_just_before_the_timeout_cancel_is_not_lost(fake, client):
    fake.on("GET", DETAIL, decision("pending"), decision("pending"), decision("released"))
    fake.on("POST", DETAIL + "cancel/", error(409, "conflict"))

    policy = WaitPolicy(timeout=0.1, cancel_on_timeout=True)
    assert client.wait(DECISION_ID, policy=policy).released


def test_cancel_returns_the_cancelled_decision(fake, client):
    fake.on("POST", DETAIL + "cancel/", decision("cancelled"))
    assert client.cancel(DECISION_ID).status == "cancelled"


def test_cancelling_twice_returns_the_cancelled_decision(fake, client):
    fake.on("POST", DETAIL + "cancel/", error(409, "conflict"))
    fake.on("GET", DETAIL, decision("cancelled"))
    assert client.cancel(DECISION_ID).status == "cancelled"


def test_cancelling_a_decided_decision_raises_conflict(fake, client):
    fake.on("POST", DETAIL + "cancel/", error(409, "conflict", "It is approved."))
    fake.on("GET", DETAIL, decision("approved"))
    with pytest.raises(aispm_client.Conflict):
        client.cancel(DECISION_ID)


BEHAVIOUR = {
    "version": 3,
    "instructions": "Be brief.",
    "settings": {"temperature": 0.2},
    "policy": [],
    "activated_at": "2026-11-30T12:00:00Z",
}


def test_behaviour_is_revalidated_with_its_etag_and_a_304_served_from_cache(fake, client):
    fake.on(
        "GET",
        "/api/v1/behaviour/",
        httpx.Response(200, json=BEHAVIOUR, headers={"ETag": '"v3-abc"'}),
        httpx.Response(304, headers={"ETag": '"v3-abc"'}),
        httpx.Response(200, json={**BEHAVIOUR, "version": 4}, headers={"ETag": '"v4-def"'}),
    )

    first = client.behaviour()
    second = client.behaviour()
    third = client.behaviour()

    assert first.version == 3 and first.etag == '"v3-abc"'
    assert second is first
    assert third.version == 4
    sent = [r.headers.get("If-None-Match") for r in fake.requests]
    assert sent == [None, '"v3-abc"', '"v3-abc"']


def test_no_active_behaviour_raises_not_found(fake, client):
    fake.on("GET", "/api/v1/behaviour/", error(404, "not_found"))
    with pytest.raises(aispm_client.NotFound):
        client.behaviour()


def feedback_item(n: int) -> dict:
    return {
        "cursor": f"c{n}",
        "decision_id": DECISION_ID,
        "action": "payment.transfer",
        "verdict": "reject",
        "comment": f"comment {n}",
        "tags": [],
        "reviewer": "rita",
        "params_before": None,
        "params_after": None,
        "decision_status": "rejected",
        "at": "2026-11-30T12:00:00Z",
    }


def test_feedback_follows_the_cursor_until_caught_up(fake, client):
    def page(request):
        after = request.url.params.get("after")
        pages = {
            None: [feedback_item(1), feedback_item(2)],
            "c2": [feedback_item(3)],
            "c3": [],
        }
        results = pages[after]
        return {"results": results, "next": results[-1]["cursor"] if results else after}

    fake.on("GET", "/api/v1/feedback/", page)

    items = list(client.feedback())

    assert [item.comment for item in items] == ["comment 1", "comment 2", "comment 3"]
    assert [r.url.params.get("after") for r in fake.requests] == [None, "c2", "c3"]
    assert list(client.feedback(after=items[-1].cursor)) == []


def test_from_env_reads_url_and_key(monkeypatch):
    monkeypatch.setenv("AISPM_URL", "http://aispm.test")
    monkeypatch.setenv("AISPM_KEY", KEY)
    with Client.from_env() as client:
        assert str(client._http.base_url) == "http://aispm.test/api/v1/"


def test_a_missing_key_is_refused_up_front():
    with pytest.raises(aispm_client.AispmError):
        Client("http://aispm.test", "")
