import csv
import hashlib
import io
import json
import re
from datetime import UTC, datetime

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import given
from hypothesis import strategies as st

from approvals import services
from approvals.connectors import Delivery
from audit.models import AuditEvent
from audit.screens import exports
from audit.screens import selectors as trail_selectors
from audit.services import audit_seal
from tests.factories import (
    ActionTypeFactory,
    UserFactory,
    agent_admin,
    agent_with_policy,
    auditor,
    reviewer,
)

pytestmark = pytest.mark.django_db

HEADER = [
    "decision_id",
    "submitted_at",
    "agent",
    "behaviour_version",
    "action",
    "summary",
    "params",
    "evidence",
    "reasoning",
    "confidence",
    "policy_outcome",
    "policy_rule",
    "policy_explanation",
    "required_approvals",
    "status",
    "reviewers",
    "review_verdicts",
    "review_comments",
    "review_signed",
    "review_credentials",
    "approved_params",
    "decided_at",
    "released_at",
    "release_result",
    "canary",
    "audit_hash",
]
POLICY = [
    {
        "id": "two-for-big",
        "action": "email.send",
        "when": "size(params.to) > 3",
        "outcome": "review",
        "approvals": 2,
        "reason": "Bulk email needs two approvers",
    },
    {"id": "mail", "action": "email.send", "outcome": "review"},
    {"id": "notes", "action": "note.post", "outcome": "review"},
]
TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


@pytest.fixture
def world():
    agent = agent_with_policy(
        slug="sdr", name="SDR agent", owner=UserFactory(username="owner"), number=7, policy=POLICY
    )
    email = ActionTypeFactory(key="email.send", summary_template="Email to {to}: {subject}")
    note = ActionTypeFactory(key="note.post", summary_template="{text}")
    return {"agent": agent, "email.send": email, "note.post": note}


def submit(world, *, action="email.send", to=1, reasoning="Asked for pricing.", **kw):
    params = kw.pop("params", None) or {
        "to": [f"p{i}@example.com" for i in range(to)],
        "subject": "Prix été",
        "body": "Hi",
    }
    return services.decision_create(
        agent=world["agent"],
        action_type=world[action],
        params=params,
        reasoning=reasoning,
        evidence=kw.pop("evidence", {"signal": "reply", "score": 0.5}),
        confidence=kw.pop("confidence", 0.8),
    )


@pytest.fixture
def audrey(client):
    user = auditor(username="audrey")
    client.force_login(user)
    return user


def download(client, url, query=None):
    response = client.get(url, query or {})
    assert response.status_code == 200, response.status_code
    assert response.streaming
    # Consuming the stream closes the response, as a WSGI server would.
    return response, b"".join(response.streaming_content)


def parse(body: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body.decode("utf-8"), newline="")))


def exported() -> AuditEvent:
    return AuditEvent.objects.filter(event="audit.exported").latest("id")


# --- who may export -----------------------------------------------------------------------

URLS = ["/audit/export.csv", "/audit/export.jsonl", "/audit/exports/{id}/manifest.json"]


@pytest.fixture
def an_export(client, world):
    submit(world)
    client.force_login(auditor())
    download(client, "/audit/export.csv")
    client.logout()
    return exported()


@pytest.mark.parametrize("url", URLS)
def test_anonymous_users_are_sent_to_login(client, an_export, url):
    response = client.get(url.format(id=an_export.pk))
    assert response.status_code == 302
    assert response.url.startswith("/accounts/login/")


@pytest.mark.parametrize("make_user", [reviewer, agent_admin, UserFactory])
@pytest.mark.parametrize("url", URLS)
def test_only_auditors_may_export_or_read_manifests(client, an_export, make_user, url):
    before = AuditEvent.objects.count()
    client.force_login(make_user())
    assert client.get(url.format(id=an_export.pk)).status_code == 403
    assert AuditEvent.objects.count() == before


@pytest.mark.parametrize("url", URLS)
def test_wrong_methods_are_refused(client, an_export, audrey, url):
    for method in ("post", "put", "delete"):
        assert getattr(client, method)(url.format(id=an_export.pk)).status_code == 405


def test_superusers_may_export(client, world):
    submit(world)
    client.force_login(UserFactory(is_superuser=True, username="root"))
    _response, body = download(client, "/audit/export.csv")
    assert len(parse(body)) == 2
    assert exported().actor_label == "root"


# --- the CSV ------------------------------------------------------------------------------


def test_the_csv_has_the_exact_header_and_one_row_per_decision(client, world, audrey):
    rita, sam = reviewer(username="rita"), reviewer(username="sam")
    submitted_at = datetime(2026, 11, 26, 10, 0, 0, 123456, tzinfo=UTC)
    with time_machine.travel(submitted_at, tick=False):
        decision = submit(world, to=4, evidence={"signal": "reply", "thread": ["a", "é"]})
    with time_machine.travel(datetime(2026, 11, 26, 10, 5, tzinfo=UTC), tick=False):
        services.decision_approve(
            decision=decision, reviewer=rita, comment="Looks right", release=False
        )
    with time_machine.travel(datetime(2026, 11, 26, 10, 7, 30, 5, tzinfo=UTC), tick=False):
        services.decision_approve(
            decision=decision, reviewer=sam, comment="OK, send", release=False
        )
    with time_machine.travel(datetime(2026, 11, 26, 10, 8, tzinfo=UTC), tick=False):
        decision = services.decision_release_claim(decision=decision)
        services.decision_release_record(
            decision=decision,
            delivery=Delivery(succeeded=True, status_code=202, excerpt="ok"),
            connector="webhook",
            started_at=datetime(2026, 11, 26, 10, 8, tzinfo=UTC),
        )
    with time_machine.travel(datetime(2026, 11, 25, tzinfo=UTC), tick=False):
        older = submit(world)

    response, body = download(client, "/audit/export.csv")

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert re.fullmatch(
        r'attachment; filename="aispm-decisions-\d{8}T\d{6}Z\.csv"',
        response["Content-Disposition"],
    )
    rows = parse(body)
    assert rows[0] == HEADER
    assert body.startswith(b"decision_id,submitted_at,agent,")
    assert [row[0] for row in rows[1:]] == [str(decision.pk), str(older.pk)]
    row = dict(zip(HEADER, rows[1], strict=True))
    last_event = AuditEvent.objects.filter(target_id=str(decision.pk)).latest("seq")
    params = {"to": [f"p{i}@example.com" for i in range(4)], "subject": "Prix été", "body": "Hi"}
    assert row == {
        "decision_id": str(decision.pk),
        "submitted_at": "2026-11-26T10:00:00.123456Z",
        "agent": "sdr",
        "behaviour_version": "7",
        "action": "email.send",
        "summary": "Email to p0@example.com, p1@example.com, p2@example.com, p3@example.com: "
        "Prix été",
        "params": row["params"],
        "evidence": row["evidence"],
        "reasoning": "Asked for pricing.",
        "confidence": "0.8",
        "policy_outcome": "review",
        "policy_rule": "two-for-big",
        "policy_explanation": row["policy_explanation"],
        "required_approvals": "2",
        "status": "released",
        "reviewers": "rita | sam",
        "review_verdicts": "approve | approve",
        "review_comments": "Looks right | OK, send",
        "review_signed": "false | false",
        "review_credentials": " | ",
        "approved_params": row["approved_params"],
        "decided_at": "2026-11-26T10:07:30.000005Z",
        "released_at": "2026-11-26T10:08:00.000000Z",
        "release_result": row["release_result"],
        "canary": "false",
        "audit_hash": last_event.hash,
    }
    assert "Bulk email needs two approvers" in row["policy_explanation"]
    # JSON cells are compact JSON (keys in the order the database keeps them).
    release = {
        "succeeded": True,
        "status_code": 202,
        "excerpt": "ok",
        "error": "",
        "duration_ms": 0,
    }
    for name, value in [
        ("params", params),
        ("evidence", {"signal": "reply", "thread": ["a", "é"]}),
        ("approved_params", params),
        ("release_result", release),
    ]:
        parsed = json.loads(row[name])
        assert parsed == value, name
        assert row[name] == json.dumps(parsed, separators=(",", ":"), ensure_ascii=False)
    assert '"thread":["a","é"]' in row["evidence"]
    assert len(last_event.hash) == 64


def test_the_export_seals_recent_events_so_each_row_has_its_latest_hash(client, world, audrey):
    decision = submit(world)
    assert not AuditEvent.objects.filter(seq__isnull=False).exists()
    services.decision_reject(decision=decision, reviewer=reviewer(), reason="No")
    _response, body = download(client, "/audit/export.csv")
    [_header, row] = parse(body)
    rejected = AuditEvent.objects.get(target_id=str(decision.pk), event="decision.rejected")
    assert rejected.seq is not None
    assert row[-1] == rejected.hash


def test_filters_apply_to_the_export_and_are_recorded(client, world, audrey):
    pending = submit(world)
    services.decision_reject(decision=submit(world), reviewer=reviewer(), reason="No")
    query = {"status": "pending", "from": "2000-01-01", "q": "pricing", "ignored": "x"}
    _response, body = download(client, "/audit/export.csv", query)
    assert [row[0] for row in parse(body)[1:]] == [str(pending.pk)]
    assert exported().data["filter"] == {"status": "pending", "from": "2000-01-01", "q": "pricing"}


def test_hostile_cells_are_neutralised(client, world, audrey):
    hostile = ["=1+1", "+1+1", "-1+1", "@SUM(1)", "\t=1", "\r=1"]
    made = {}
    for text in hostile:
        decision = submit(
            world,
            action="note.post",
            params={"text": f"{text} in the summary"},
            reasoning=f"{text}\r\nsecond line, with a comma",
            evidence={"x": text},
        )
        services.decision_reject(decision=decision, reviewer=reviewer(), reason=f"{text} no")
        made[str(decision.pk)] = text
    approved = submit(world, to=4)
    services.decision_approve(
        decision=approved, reviewer=reviewer(), comment="-5 is fine", release=False
    )
    services.decision_approve(
        decision=approved, reviewer=reviewer(), comment="=HYPERLINK(x)", release=False
    )
    _response, body = download(client, "/audit/export.csv")
    rows = [dict(zip(HEADER, row, strict=True)) for row in parse(body)[1:]]
    for row in rows:
        for name, cell in row.items():
            assert not cell.startswith(TRIGGERS), (name, cell)
    by_id = {row["decision_id"]: row for row in rows}
    for pk, text in made.items():
        row = by_id[pk]
        # Summaries are one line: a leading CR becomes a space, which needs no quote.
        summary = f"{text} in the summary".replace("\r", " ")
        assert row["summary"] == ("'" + summary if summary.startswith(TRIGGERS) else summary)
        assert row["reasoning"] == f"'{text}\r\nsecond line, with a comma"
        # The service strips a reason's leading whitespace; what remains is neutralised.
        assert row["review_comments"] == f"'{text.lstrip()} no"
        # JSON cells start with "{": the hostile text stays intact inside them.
        assert json.loads(row["params"]) == {"text": f"{text} in the summary"}
        assert json.loads(row["evidence"]) == {"x": text}
    assert by_id[str(approved.pk)]["review_comments"] == "'-5 is fine | =HYPERLINK(x)"


def test_the_export_is_audited_with_its_row_count_and_the_sha256_of_its_bytes(
    client, world, audrey
):
    for _ in range(3):
        submit(world)
    while audit_seal():
        pass
    head = AuditEvent.objects.order_by("-seq").first()
    _response, body = download(client, "/audit/export.csv")
    event = exported()
    assert (event.actor_kind, event.actor_label, event.actor_user) == ("user", "audrey", audrey)
    assert event.data["format"] == "csv"
    assert event.data["rows"] == 3
    assert event.data["complete"] is True
    assert event.data["bytes"] == len(body)
    assert event.data["sha256"] == hashlib.sha256(body).hexdigest()
    assert event.data["chain_head_hash"] == head.hash
    assert event.data["filter"] == {}
    assert event.seq is None  # recorded after the stream, sealed by the next run


def test_the_head_recorded_is_the_one_the_export_read(client, world, audrey):
    submit(world)  # unsealed: the export seals it first
    _response, body = download(client, "/audit/export.csv")
    event = exported()
    submitted = AuditEvent.objects.get(event="decision.submitted")
    assert event.data["chain_head_hash"] == submitted.hash
    assert parse(body)[1][-1] == submitted.hash


# Transactional: closing a response ends the request, which outside a test transaction
# leaves the connection open, as in production.
@pytest.mark.django_db(transaction=True)
def test_an_abandoned_download_is_still_audited(client, world, audrey, monkeypatch):
    monkeypatch.setattr(trail_selectors, "EXPORT_CHUNK", 2)
    for _ in range(5):
        submit(world)
    response = client.get("/audit/export.csv")
    stream = iter(response.streaming_content)
    sent = next(stream) + next(stream)
    response.close()  # the client went away after the header and the first chunk
    event = exported()
    assert event.data["complete"] is False
    assert event.data["rows"] == 2
    assert event.data["sha256"] == hashlib.sha256(sent).hexdigest()


def test_it_reads_decisions_in_keyset_chunks_with_one_query_each_for_reviews_and_hashes(
    client, world, audrey, monkeypatch
):
    monkeypatch.setattr(trail_selectors, "EXPORT_CHUNK", 3)
    made = [submit(world) for _ in range(10)]
    for decision in made[:4]:
        services.decision_reject(decision=decision, reviewer=reviewer(), reason="No")
    while audit_seal():
        pass
    response = client.get("/audit/export.csv")
    with CaptureQueriesContext(connection) as queries:
        body = b"".join(response.streaming_content)
    tables = [
        q["sql"].split(" FROM ", 1)[1].split()[0]
        for q in queries.captured_queries
        if q["sql"].startswith("SELECT")
    ]
    # Four chunks (3 + 3 + 3 + 1), three queries each, whatever the number of rows.
    assert tables == ['"approvals_decision"', '"approvals_review"', '"audit_auditevent"'] * 4
    ids = [row[0] for row in parse(body)[1:]]
    expected = sorted(made, key=lambda d: (d.created_at, d.pk), reverse=True)
    assert ids == [str(d.pk) for d in expected]


def test_an_empty_export_is_just_the_header(client, world, audrey):
    _response, body = download(client, "/audit/export.csv", {"status": "failed"})
    assert parse(body) == [HEADER]
    assert exported().data["rows"] == 0


# --- JSON Lines ---------------------------------------------------------------------------


def test_jsonl_has_one_compact_object_per_audit_event_of_the_filtered_decisions(
    client, world, audrey
):
    kept = submit(world, reasoning="Line one\nline two, «quoted»")
    services.decision_reject(decision=kept, reviewer=reviewer(), reason="No")
    dropped = submit(world, action="note.post", params={"text": "x"})
    response, body = download(client, "/audit/export.jsonl", {"action": "email.send"})
    assert response["Content-Type"] == "application/jsonl; charset=utf-8"
    assert re.fullmatch(
        r'attachment; filename="aispm-audit-events-\d{8}T\d{6}Z\.jsonl"',
        response["Content-Disposition"],
    )
    lines = body.decode().splitlines()
    assert body.endswith(b"\n")
    objects = [json.loads(line) for line in lines]
    events = AuditEvent.objects.filter(target_id=str(kept.pk)).order_by("id")
    assert [o["id"] for o in objects] == [e.pk for e in events]
    assert not any(o["target_id"] == str(dropped.pk) for o in objects)
    for line, obj, event in zip(lines, objects, events, strict=True):
        assert list(obj) == [
            "id",
            "seq",
            "created_at",
            "event",
            "actor_kind",
            "actor_label",
            "actor_user_id",
            "target_type",
            "target_id",
            "data",
            "prev_hash",
            "hash",
        ]
        assert obj["seq"] == event.seq and obj["hash"] == event.hash
        assert obj["prev_hash"] == event.prev_hash
        assert obj["data"] == event.data
        assert obj["target_type"] == "approvals.decision"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", obj["created_at"])
        assert line == json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    assert "«quoted»" in body.decode()
    event = exported()
    assert event.data["format"] == "jsonl"
    assert event.data["rows"] == len(lines) == 2
    assert event.data["sha256"] == hashlib.sha256(body).hexdigest()
    assert event.data["filter"] == {"action": "email.send"}


# --- the manifest -------------------------------------------------------------------------


def test_the_manifest_describes_the_export(client, world, audrey):
    submit(world)
    _response, body = download(client, "/audit/export.csv", {"agent": "sdr"})
    event = exported()
    response = client.get(f"/audit/exports/{event.pk}/manifest.json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"].startswith("attachment;")
    manifest = response.json()
    assert manifest == {
        "filter": {"agent": "sdr"},
        "format": "csv",
        "rows": 1,
        "sha256": hashlib.sha256(body).hexdigest(),
        "chain_head_hash": AuditEvent.objects.get(event="decision.submitted").hash,
        "chain_head_seq": AuditEvent.objects.get(event="decision.submitted").seq,
        "checkpoint": None,  # no signing key in this test: unanchored
        "exported_at": event.data["exported_at"],
        "exported_by": "audrey",
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", manifest["exported_at"])
    # Any auditor may read it: it is part of the audit record.
    client.force_login(auditor())
    assert client.get(f"/audit/exports/{event.pk}/manifest.json").status_code == 200


def test_only_export_events_have_manifests(client, world, audrey):
    submit(world)
    other = AuditEvent.objects.get(event="decision.submitted")
    assert client.get(f"/audit/exports/{other.pk}/manifest.json").status_code == 404
    assert client.get("/audit/exports/999999/manifest.json").status_code == 404


def test_cells_helpers():
    assert exports.neutralise("=x") == "'=x" and exports.neutralise("x=") == "x="
    assert exports.neutralise("") == ""
    assert exports.utc_iso(None) == ""
    assert exports.compact_json(None) == ""
    assert exports.compact_json({"a": [1, "é"]}) == '{"a":[1,"é"]}'


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


@given(JSON_VALUES, st.booleans())
def test_json_text_is_compacted_exactly_like_a_decode_and_encode(value, ascii_only):
    text = json.dumps(value, ensure_ascii=ascii_only)
    compact = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    assert exports.compact_json_text(text) == compact


def test_json_text_keeps_spaces_inside_strings():
    text = '{"a, b": "c: d", "e": ["f, g", 1.5, null], "h": "\\"", "é": "\\u00e9"}'
    assert (
        exports.compact_json_text(text) == '{"a, b":"c: d","e":["f, g",1.5,null],"h":"\\"","é":"é"}'
    )
    assert exports.compact_json_text('{"x": "a\\nb", "y": true}') == '{"x":"a\\nb","y":true}'
    assert exports.compact_json_text(None) == ""
