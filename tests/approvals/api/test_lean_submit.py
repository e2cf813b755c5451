"""The lean submission path (approvals/api/lean.py) answers exactly as the DRF view.

Every case is sent twice, to two agents set up alike: once with the lean path in
place, once without it. The two answers must agree in status, body and headers, and
the case must have been answered by the path it names: the lean path for the common
case, the DRF view for everything else. The submission and hostile-input tests also
run again without the lean path (test_submit_without_lean.py).
"""

import json
import re

import pytest
from django.test import Client
from django.test.utils import override_settings

from agents.services import agent_key_issue, agent_suspend
from approvals.api import lean
from approvals.models import Decision
from audit.models import AuditEvent
from tests.factories import AgentFactory, BehaviourVersionFactory, GrantFactory, UserFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/decisions/"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
# Headers that differ between any two responses.
VOLATILE = {"X-Request-ID", "Content-Length"}


@pytest.fixture
def twins(agent, email_action, payment_action):
    """The sdr-agent and a twin with the same behaviour and grants, each with a key."""
    twin = AgentFactory(slug="twin-agent", owner=UserFactory(username="twin-owner"))
    source = agent.active_behaviour
    twin.active_behaviour = BehaviourVersionFactory(
        agent=twin, number=source.number, policy=source.policy
    )
    twin.save()
    for grant in agent.grants.all():
        GrantFactory(
            agent=twin,
            action_type=grant.action_type,
            limit_per_hour=grant.limit_per_hour,
            constraint=grant.constraint,
        )
    return [
        (agent, agent_key_issue(agent=agent).secret),
        (twin, agent_key_issue(agent=twin).secret),
    ]


@pytest.fixture
def answered(monkeypatch):
    """Which path answered each request: True for the lean path, False for the view."""
    seen = []
    real = lean.decision_submit

    def spy(request):
        response = real(request)
        seen.append(response is not None)
        return response

    monkeypatch.setattr(lean, "decision_submit", spy)
    return seen


def _client(lean_path: bool) -> Client:
    views = None if lean_path else {}
    with override_settings(**({} if views is None else {"AISPM_API_LEAN_VIEWS": views})):
        client = Client()
        client.handler.load_middleware()
    return client


def _send(client, key, body, *, content_type="application/json", path=URL, **headers):
    if not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    headers.setdefault("HTTP_AUTHORIZATION", f"Bearer {key}")
    return client.generic("POST", path, body, content_type=content_type, **headers)


def _normal(response) -> tuple:
    text = UUID.sub("<uuid>", STAMP.sub("<time>", response.content.decode()))
    headers = {name: value for name, value in response.headers.items() if name not in VOLATILE}
    return response.status_code, text, headers


def _both(twins, answered, body, *, lean_expected: bool, times: int = 1, **options):
    """Send `body` `times` times through each path; the answers must agree."""
    (_, lean_key), (_, drf_key) = twins
    lean_client, drf_client = _client(True), _client(False)
    results = []
    for _ in range(times):
        answered.clear()
        got = _normal(_send(lean_client, lean_key, body, **options))
        assert answered == [lean_expected], "answered by the wrong path"
        answered.clear()
        want = _normal(_send(drf_client, drf_key, body, **options))
        assert answered == [], "the DRF client took the lean path"
        assert got == want
        results.append(got)
    return results


def _email(**changes):
    body = {
        "action": "email.send",
        "params": {"to": ["lead@example.com"], "subject": "Pricing", "body": "Hi"},
        "reasoning": "The prospect asked for pricing.",
        "evidence": {"signal": "reply"},
        "confidence": 0.8,
    }
    body.update(changes)
    return {name: value for name, value in body.items() if value is not ...}


HOSTILE_TEXT = [
    "<script>alert(1)</script>",
    '<div hx-get="/agents/" hx-trigger="load">x</div>',
    *[f'{prefix}HYPERLINK("http://evil.example")' for prefix in "=+-@"],
    "line\r\nX-Injected: 1",
    "\u202e0005\u202c EUR \u2066x\u2069\u200b",
    "x\r\nSet-Cookie: a=b\r\n<script>alert(1)</script>",
]


@pytest.mark.parametrize(
    "body",
    [
        _email(),
        _email(idempotency_key="order-1"),
        _email(confidence=None),
        _email(confidence=1),
        _email(confidence=0),
        _email(evidence=...),
        _email(evidence={}),
        _email(external_ref="crm-42"),
        _email(external_ref=""),
        {"action": "payment.transfer", "params": {"amount": 10, "to": "Acme"}, "reasoning": "x"},
        *[_email(reasoning=text) for text in HOSTILE_TEXT],
        *[_email(params={"to": ["a@example.com"], "subject": t, "body": t}) for t in HOSTILE_TEXT],
        *[_email(evidence={"note": text}) for text in HOSTILE_TEXT],
        _email(evidence={"braces": "{" * 10_000}),
    ],
)
def test_the_common_case_is_answered_by_the_lean_path_as_by_the_view(twins, answered, body):
    _both(twins, answered, body, lean_expected=True)


@pytest.mark.parametrize(
    "body",
    [
        # Refused by the pipeline: the lean path renders the same error.
        _email(action="email.unknown"),
        _email(params={"to": ["a@example.com"], "subject": "s"}),
        _email(
            params={"to": [f"a{i}@example.com" for i in range(51)], "subject": "s", "body": "b"}
        ),
        _email(params={"to": ["not an address"], "subject": "s", "body": "b"}),
    ],
)
def test_refusals_are_rendered_as_the_view_renders_them(twins, answered, body):
    [(status, _, _)] = _both(twins, answered, body, lean_expected=True)
    assert status in {400, 403}


def test_replays_and_conflicts_agree(twins, answered):
    first, replay = _both(
        twins, answered, _email(idempotency_key="same"), lean_expected=True, times=2
    )
    assert (first[0], replay[0]) == (201, 200)
    [conflict] = _both(
        twins, answered, _email(idempotency_key="same", reasoning="other"), lean_expected=True
    )
    assert conflict[0] == 409


def test_the_idempotency_key_header_agrees(twins, answered):
    statuses = [
        result[0]
        for result in _both(
            twins, answered, _email(), lean_expected=True, times=2, HTTP_IDEMPOTENCY_KEY="hdr-1"
        )
    ]
    assert statuses == [201, 200]
    # A header that differs from the body's key is the view's to refuse.
    [(status, _, _)] = _both(
        twins,
        answered,
        _email(idempotency_key="body-key"),
        lean_expected=False,
        HTTP_IDEMPOTENCY_KEY="header-key",
    )
    assert status == 400


def test_the_hourly_limit_agrees(twins, answered):
    for agent, _ in twins:
        agent.grants.filter(action_type__key="payment.transfer").update(limit_per_hour=1)
        agent.scope_version += 1
        agent.save(update_fields=["scope_version"])
    body = {"action": "payment.transfer", "params": {"amount": 10, "to": "Acme"}, "reasoning": "x"}
    first, limited = _both(twins, answered, body, lean_expected=True, times=2)
    assert first[0] == 201
    assert limited[0] == 429 and "Retry-After" in limited[2]


def test_a_suspended_agent_is_refused_alike(twins, answered):
    for agent, _ in twins:
        agent_suspend(agent=agent, actor=agent.owner, reason="test")
    [(status, text, _)] = _both(twins, answered, _email(), lean_expected=True)
    assert status == 403 and "agent_suspended" in text


@pytest.mark.parametrize(
    ("body", "options"),
    [
        # Not the request's plain shape: the view answers.
        (_email(action=" email.send"), {}),
        (_email(action=""), {}),
        (_email(action="x" * 101), {}),
        (_email(reasoning="a\x00b"), {}),
        (_email(reasoning=7), {}),
        (_email(confidence=True), {}),
        (_email(confidence="0.5"), {}),
        (_email(confidence=1.5), {}),
        (_email(evidence=None), {}),
        (_email(evidence=[1]), {}),
        (_email(params=[]), {}),
        (_email(params={"to": ["a\x00@example.com"], "subject": "s", "body": "b"}), {}),
        (_email(idempotency_key=""), {}),
        (_email(idempotency_key="k" * 256), {}),
        (_email(external_ref=" x"), {}),
        (_email(extra="field"), {}),
        (_email(action=...), {}),
        ([1, 2], {}),
        ("not json", {}),
        ('{"action": NaN}', {}),
        ('{"action": "email.send", "params": {}, "reasoning": "\\ud800"}', {}),
        ('{"action": "email.send", "params": {}, "reasoning": "x", "confidence": NaN}', {}),
        ('{"confidence": 1e999}', {}),
        (_email(evidence={"n": 2**70}), {}),
        (_email(evidence={"n": 2**64}), {}),
        (_email(confidence=2**63), {}),
        ('{"action": "email.send", "params": ' + "[" * 10_000 + "]" * 10_000 + "}", {}),
        (_email(evidence={"deep": json.loads("[" * 40 + "]" * 40)}), {}),
        (_email(), {"content_type": "text/plain"}),
        (_email(), {"content_type": "application/json; charset=latin-1"}),
        (_email(), {"HTTP_ACCEPT": "text/html"}),
        (_email(), {"path": URL + "?format=json"}),
        (_email(), {"HTTP_AUTHORIZATION": "Bearer aispm_garbage"}),
        (_email(), {"HTTP_AUTHORIZATION": ""}),
        (_email(), {"HTTP_AUTHORIZATION": "Basic abc"}),
        (_email(), {"HTTP_IDEMPOTENCY_KEY": " "}),
    ],
)
def test_anything_else_is_answered_by_the_view(twins, answered, body, options):
    _both(twins, answered, body, lean_expected=False, **options)


def test_a_revoked_key_is_the_views_to_refuse(twins, answered):
    from agents.services import agent_key_revoke

    for agent, _secret in twins:
        agent_key_revoke(key=agent.keys.get(), actor=agent.owner)
    [(status, _, _)] = _both(twins, answered, _email(), lean_expected=False)
    assert status == 401


def test_the_lean_path_stores_what_the_view_stores(twins, answered):
    (lean_agent, _), (drf_agent, _) = twins
    _both(twins, answered, _email(idempotency_key="stored"), lean_expected=True)

    def stored(agent):
        decision = Decision.objects.get(agent=agent)
        event = AuditEvent.objects.get(event="decision.submitted", target_id=str(decision.pk))
        fields = {
            name: getattr(decision, name)
            for name in ("status", "params", "reasoning", "evidence", "confidence", "summary")
        }
        data = {k: v for k, v in event.data.items() if k not in {"key_id"}}
        return fields, UUID.sub("<uuid>", json.dumps(data, sort_keys=True))

    assert stored(lean_agent) == stored(drf_agent)


def test_the_lean_path_names_the_agent_in_the_request_log(twins, answered, caplog):
    (agent, key), _ = twins
    with caplog.at_level("INFO", logger="aispm.request"):
        response = _send(_client(True), key, _email())
    assert response.status_code == 201 and answered == [True]
    [record] = [r for r in caplog.records if r.name == "aispm.request"]
    assert record.agent == agent.slug
    assert record.decision_id == response.json()["id"]


@pytest.mark.parametrize("length", ["²", "٣", "-1", "1e3", " 12", ""])
def test_a_content_length_that_is_not_ascii_digits_is_refused_alike(twins, answered, length):
    [(status, _, _)] = _both(twins, answered, _email(), lean_expected=False, CONTENT_LENGTH=length)
    assert status < 500
