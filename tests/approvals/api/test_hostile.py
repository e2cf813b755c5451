"""Hostile input to the agent API and to governance files: a 400 with the error envelope
(or a one-line command error), never a 500 or a traceback."""

import io
import json

import pytest
import yaml
from django.core.management import CommandError, call_command

from agents.models import Grant
from approvals.models import Decision

pytestmark = pytest.mark.django_db

DECISIONS = "/api/v1/decisions/"
DEEP = 10_000


def _post_raw(api, text: str, **extra):
    """A body as a hostile client writes it: JSON text, escapes and all."""
    return api.generic(
        "POST",
        DECISIONS,
        text.encode("utf-8", "surrogatepass"),
        content_type="application/json",
        **extra,
    )


def _refused(response) -> dict:
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    return error


HOSTILE_BODIES = {
    "lone surrogate in a params value": ('"subject"', r'"\ud800"'),
    "lone surrogate in a params key": ('"body"', r'"\udfff x"'),
    "NUL in a params value": ('"Hi"', r'"a\u0000b"'),
    "NUL in a params key": ('"body"', r'"b\u0000"'),
    "lone surrogate in reasoning": ('"The prospect asked for pricing."', r'"why \ud800"'),
    "NUL in reasoning": ('"The prospect asked for pricing."', r'"why \u0000"'),
    "NUL in the action": ('"email.send"', r'"email.send\u0000"'),
    "lone surrogate in external_ref": ('"external_ref": ""', r'"external_ref": "\ud83d"'),
    "NUL in the idempotency key": ('"idempotency_key": "k"', r'"idempotency_key": "k\u0000"'),
    "NaN": ("0.8", "NaN"),
    "Infinity": ("0.8", "Infinity"),
    "-Infinity in params": ('"Hi"', "-Infinity"),
    "an integer past 2^63": ('"Hi"', str(2**63)),
}


@pytest.fixture
def body_text(email_body):
    body = dict(email_body, external_ref="", idempotency_key="k")
    return json.dumps(body)


@pytest.mark.parametrize("name", HOSTILE_BODIES)
def test_hostile_values_in_a_submission_are_refused_with_the_envelope(api, body_text, name):
    old, new = HOSTILE_BODIES[name]
    assert old in body_text
    _refused(_post_raw(api, body_text.replace(old, new, 1)))
    assert not Decision.objects.exists()


@pytest.mark.parametrize("where", ["params", "evidence"])
def test_lone_surrogates_in_evidence_and_params_never_reach_the_fingerprint(api, email_body, where):
    body = json.dumps(dict(email_body, idempotency_key="k"))
    body = body.replace('"signal"' if where == "evidence" else '"subject"', r'"\ud800"', 1)
    error = _refused(_post_raw(api, body))
    assert "surrogate" in json.dumps(error)


@pytest.mark.parametrize(
    "deep",
    ["[" * DEEP + "]" * DEEP, '{"a":' * DEEP + "1" + "}" * DEEP],
    ids=["array", "object"],
)
def test_json_nested_10000_deep_is_refused(api, email_body, deep):
    body = json.dumps(email_body).replace('"reply"', deep, 1)
    assert _post_raw(api, body).status_code == 400


@pytest.mark.parametrize("url", ["/api/v1/decisions/%00/", "/api/v1/decisions/%00/cancel/"])
def test_a_nul_as_a_decision_id_is_not_found(api, url):
    response = api.post(url) if url.endswith("cancel/") else api.get(url)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/decisions/?status=%00",
        "/api/v1/decisions/?cursor=%00ab",
        "/api/v1/feedback/?after=%00",
    ],
)
def test_a_nul_in_the_query_string_is_refused_with_the_envelope(api, url):
    _refused(api.get(url))


def test_a_nul_in_the_idempotency_key_header_is_refused(api, email_body):
    response = api.post(DECISIONS, email_body, format="json", HTTP_IDEMPOTENCY_KEY="k\x00")
    _refused(response)


@pytest.mark.parametrize(
    "header", ["Bearer aispm_\x00_x", "Bearer aispm_é_ß", "Bearer " + "a" * 100_000]
)
def test_a_hostile_key_is_unauthenticated_not_a_crash(agent, email_body, header):
    from rest_framework.test import APIClient

    response = APIClient().post(DECISIONS, email_body, format="json", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


# Governance YAML


def _apply(tmp_path, text: str) -> str:
    path = tmp_path / "governance.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    with pytest.raises(CommandError) as refused:
        call_command("apply_governance", str(path), stdout=io.StringIO())
    return str(refused.value)


def _config(limit=10, settings=None) -> dict:
    return {
        "action_types": [
            {
                "key": "notes.add",
                "name": "Add a note",
                "params_schema": {"type": "object"},
                "irreversible": False,
            }
        ],
        "agents": [
            {
                "slug": "noter",
                "name": "Noter",
                "grants": [{"action": "notes.add", "limit_per_hour": limit}],
                "behaviour": {"settings": settings or {"temperature": 0.2}, "policy": []},
            }
        ],
    }


@pytest.mark.parametrize(
    "text",
    [
        yaml.safe_dump(_config()).replace("0.2", ".nan"),
        yaml.safe_dump(_config()).replace("0.2", ".inf"),
        yaml.safe_dump(_config()).replace("0.2", "-.Inf"),
        yaml.safe_dump(_config()).replace("0.2", "[" * DEEP + "]" * DEEP),
        yaml.safe_dump(_config()).replace("0.2", "\n" + "- " * DEEP + "x"),
        yaml.safe_dump(_config()).replace("0.2", '"a\\0b"'),
        yaml.safe_dump(_config()).replace("0.2", '"\\ud800"'),
        yaml.safe_dump(_config()).replace("0.2", str(2**64)),
    ],
    ids=["nan", "inf", "-inf", "deep flow", "deep block", "nul", "surrogate", "2^64"],
)
def test_apply_governance_prints_an_error_for_hostile_values(tmp_path, text):
    message = _apply(tmp_path, text)
    assert "Traceback" not in message
    assert "governance.yaml" in message
    assert not Grant.objects.exists()


@pytest.mark.parametrize("limit", [2**31, 2**62])
def test_apply_governance_refuses_a_limit_per_hour_past_the_column(tmp_path, limit):
    message = _apply(tmp_path, yaml.safe_dump(_config(limit=limit)))
    assert "limit_per_hour" in message
    assert not Grant.objects.exists()


def test_apply_governance_still_accepts_the_largest_limit(tmp_path):
    path = tmp_path / "governance.yaml"
    path.write_text(yaml.safe_dump(_config(limit=2**31 - 1)), encoding="utf-8")
    call_command("apply_governance", str(path), stdout=io.StringIO())
    assert Grant.objects.get().limit_per_hour == 2**31 - 1
