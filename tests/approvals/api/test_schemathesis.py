"""Fuzz the agent API against the OpenAPI schema it serves, with Schemathesis.

Requests go in-process through `aispm_site.wsgi.application`, in the test's own thread,
so they reach the test database. The tests are transactional: every request commits as
it would in production, and Django's end-of-request connection handling cannot throw
away a test transaction.

Every response is checked by Schemathesis: no 5xx, the status code is documented, and
the content type, headers and body match the schema. Hypothesis is derandomized, so a
given test run sends the same inputs every time. (Hypothesis also draws literals from the
project's loaded modules, so running this file alone sends slightly different ones.)
"""

import base64
import json
import math
import string
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aispm_site.wsgi import application
from approvals import services
from approvals.models import Decision
from tests.factories import AgentFactory, DecisionFactory, UserFactory

SCHEMA_URL = "/api/schema/"
DECISIONS = "/api/v1/decisions/"

# One agent and one database serve every generated request, as a real server would.
FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# Path parameters and a single header cannot be made schema-invalid, so these operations
# get only the coverage phase's negative cases (missing key, unexpected methods).
NO_NEGATIVE_FUZZING = ["decisions_retrieve", "decisions_cancel", "behaviour_retrieve"]


def _load(mode: str):
    operations = [
        {
            # `cursor` and `after` are opaque: the schema can only say "string", and
            # a string that is not a cursor we issued is rightly a 400.
            "include-operation-id": ["decisions_list", "feedback_list"],
            "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "400"]}},
        },
        {
            # `params` is validated against the action type's JSON Schema and the action
            # must be granted, so no static schema can promise acceptance.
            # test_random_submissions_get_documented_responses covers this operation with
            # bodies that can succeed.
            "include-operation-id": "decisions_create",
            "checks": {
                "positive_data_acceptance": {"enabled": False},
                # A body over 256 KiB is refused before it is parsed, and 413 is documented.
                "negative_data_rejection": {
                    "expected-statuses": [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 429]
                },
            },
        },
    ]
    if mode == "negative":
        operations.append(
            {
                "include-operation-id": NO_NEGATIVE_FUZZING,
                "phases": {"fuzzing": {"enabled": False}},
            }
        )
    config = schemathesis.Config.from_dict(
        {
            "seed": 20260101,
            "generation": {
                "mode": mode,
                "database": "none",
                # Negative mode would otherwise drop or mangle the agent key on most cases,
                # and never get past authentication.
                "with-security-parameters": mode == "positive",
            },
            # CI must send the same requests on every run, so generation does not learn from
            # responses: they carry fresh UUIDs and timestamps.
            "phases": {
                "coverage": {"extra-data-sources": {"responses": False}},
                "fuzzing": {
                    "extra-data-sources": {"responses": False},
                    "error-feedback": {"enabled": False},
                },
                "stateful": {"enabled": False},
            },
            "operations": operations,
        }
    )
    return schemathesis.openapi.from_wsgi(SCHEMA_URL, application, config=config)


positive = _load("positive")
negative = _load("negative")


@pytest.fixture
def reviewer(db):
    return UserFactory(username="rita")


@pytest.fixture
def decisions(api, agent, email_body, reviewer):
    """Real decisions in most states, with reviews, so responses carry real data."""

    def submit(**changes):
        response = api.post(DECISIONS, dict(email_body, **changes), format="json")
        assert response.status_code == 201, response.content
        return Decision.objects.get(pk=response.json()["id"])

    edited = submit(external_ref="crm-1")
    services.decision_approve(
        decision=edited,
        reviewer=reviewer,
        comment="Shorter subject.",
        approved_params=dict(email_body["params"], subject="Prices"),
    )
    rejected = submit()
    services.decision_reject(
        decision=rejected, reviewer=reviewer, reason="Wrong prospect.", tags=["targeting"]
    )
    big_payment = {"amount": 5000, "to": "Acme"}
    one_of_two = submit(action="payment.transfer", params=big_payment, idempotency_key="pay-1")
    services.decision_approve(decision=one_of_two, reviewer=reviewer, comment="One of two.")
    submit(action="payment.transfer", params={"amount": 10, "to": "Acme"})
    submit(params=dict(email_body["params"], to=["ceo@competitor.example"]))
    pending = submit(idempotency_key="email-1")
    return {"pending": pending, "approved": edited}


@pytest.fixture
def auth(agent_key):
    return {"Authorization": f"Bearer {agent_key}"}


@pytest.mark.django_db(transaction=True)
@positive.parametrize()
@FUZZ
def test_valid_requests_get_documented_responses(case, auth, decisions):
    case.call_and_validate(headers=auth)


@pytest.mark.django_db(transaction=True)
@negative.parametrize()
@FUZZ
def test_invalid_requests_are_refused_without_a_server_error(case, auth, decisions):
    case.call_and_validate(headers=auth)


def _call(auth, method: str, path: str, **kwargs):
    """One request built by hand, validated like the generated ones."""
    case = positive[path][method].Case(**kwargs)
    return case.call_and_validate(headers=auth)


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)
recipients = st.sampled_from(
    ["lead@example.com", "ops@example.org", "ceo@competitor.example", "not-an-email"]
)
email_params = st.fixed_dictionaries(
    {
        "to": st.lists(recipients, max_size=12),
        "subject": st.text(max_size=40),
        "body": st.text(max_size=40),
    },
    optional={"cc": st.text(max_size=5)},
)
payment_params = st.fixed_dictionaries(
    {
        "amount": st.integers(min_value=-5, max_value=5000)
        | st.floats(allow_nan=False, allow_infinity=False),
        "to": st.text(max_size=10),
    }
)
any_params = st.dictionaries(st.text(max_size=8), json_values, max_size=4)
# An action with params of its own shape most of the time, so many bodies get past
# validation into scope, limits, constraints and policy.
action_and_params = st.one_of(
    st.tuples(st.just("email.send"), email_params),
    st.tuples(st.just("payment.transfer"), payment_params),
    st.tuples(
        st.sampled_from(["email.send", "payment.transfer", "crm.update"]) | st.text(max_size=20),
        email_params | payment_params | any_params,
    ),
)
submissions = st.builds(
    lambda pair, rest: {"action": pair[0], "params": pair[1], **rest},
    action_and_params,
    st.fixed_dictionaries(
        {"reasoning": st.text(min_size=1, max_size=60)},
        optional={
            "evidence": st.dictionaries(st.text(max_size=8), json_values, max_size=3),
            "confidence": st.none() | st.floats(min_value=-1, max_value=2),
            "idempotency_key": st.sampled_from(["k-1", "k-2", "email-1"]),
            "external_ref": st.text(max_size=20),
        },
    ),
)
idempotency_headers = st.fixed_dictionaries(
    {}, optional={"Idempotency-Key": st.sampled_from(["k-1", "k-3", "k" * 256])}
)


@pytest.mark.django_db(transaction=True)
@FUZZ
@given(body=submissions, headers=idempotency_headers)
def test_random_submissions_get_documented_responses(auth, decisions, body, headers):
    """Bodies shaped like real submissions reach the pipeline: created, replayed, refused."""
    response = _call(auth, "POST", DECISIONS, body=body, headers=headers)
    assert response.status_code in {200, 201, 400, 403, 409, 429}


def _drf_cursor(pairs: list[tuple[str, str]]) -> str:
    return base64.b64encode(urlencode(pairs).encode()).decode()


def _feedback_cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


# Cursors that decode: DRF's `o`ffset, `r`everse and `p`osition keys with hostile values,
# and feedback cursors ("r<review id>") with hostile ids.
cursor_values = (
    st.text(max_size=30)
    | st.integers().map(str)
    | st.datetimes().map(str)
    | st.sampled_from(["2026-13-45 00:00:00", "9999-12-31T23:59:59+99:00", "1", "-1"])
)
drf_cursors = st.lists(
    st.tuples(st.sampled_from(["o", "r", "p", "x"]), cursor_values), max_size=3
).map(_drf_cursor)
feedback_cursors = (
    st.text(alphabet=string.digits, min_size=1, max_size=25) | st.text(max_size=20)
).map(lambda tail: _feedback_cursor(f"r{tail}"))


@pytest.mark.django_db(transaction=True)
@pytest.mark.filterwarnings("ignore:DateTimeField Decision.created_at received a naive datetime")
@FUZZ
@given(cursor=drf_cursors, status=st.none() | st.sampled_from(Decision.Status.values))
def test_crafted_list_cursors_are_refused_not_crashed(auth, decisions, cursor, status):
    query = {"cursor": cursor} if status is None else {"cursor": cursor, "status": status}
    response = _call(auth, "GET", DECISIONS, query=query)
    assert response.status_code in {200, 400}


@pytest.mark.django_db(transaction=True)
@FUZZ
@given(after=feedback_cursors)
def test_crafted_feedback_cursors_are_refused_not_crashed(auth, decisions, after):
    response = _call(auth, "GET", "/api/v1/feedback/", query={"after": after})
    assert response.status_code in {200, 400}


@pytest.mark.django_db(transaction=True)
def test_real_data_in_every_state_matches_the_schema(auth, agent, decisions, email_action):
    """The success paths random input rarely reaches, each validated against the schema."""
    DecisionFactory.create_batch(50, agent=agent, action_type=email_action)
    page = _call(auth, "GET", DECISIONS).json()
    assert len(page["results"]) == 50
    assert page["next"]
    [cursor] = parse_qs(urlsplit(page["next"]).query)["cursor"]
    older = _call(auth, "GET", DECISIONS, query={"cursor": cursor})
    assert older.json()["results"]
    for status in Decision.Status.values:
        _call(auth, "GET", DECISIONS, query={"status": status})

    detail = "/api/v1/decisions/{decision_id}/"
    cancel = "/api/v1/decisions/{decision_id}/cancel/"
    for decision in Decision.objects.filter(agent=agent):
        body = _call(auth, "GET", detail, path_parameters={"decision_id": str(decision.pk)})
        assert body.status_code == 200
    pending = {"decision_id": str(decisions["pending"].pk)}
    assert _call(auth, "POST", cancel, path_parameters=pending).status_code == 200
    assert _call(auth, "POST", cancel, path_parameters=pending).status_code == 409
    approved = {"decision_id": str(decisions["approved"].pk)}
    assert _call(auth, "POST", cancel, path_parameters=approved).status_code == 409

    other = DecisionFactory(agent=AgentFactory(slug="other"), action_type=email_action)
    hidden = {"decision_id": str(other.pk)}
    assert _call(auth, "GET", detail, path_parameters=hidden).status_code == 404

    behaviour = _call(auth, "GET", "/api/v1/behaviour/")
    assert behaviour.status_code == 200
    [etag] = behaviour.headers["etag"]
    for tag in (etag, f"W/{etag}", f'"nope", {etag}'):
        unchanged = _call(auth, "GET", "/api/v1/behaviour/", headers={"If-None-Match": tag})
        assert unchanged.status_code == 304

    feedback = _call(auth, "GET", "/api/v1/feedback/").json()
    assert len(feedback["results"]) == 3
    rest = _call(
        auth, "GET", "/api/v1/feedback/", query={"after": feedback["results"][0]["cursor"]}
    )
    assert len(rest.json()["results"]) == 2

    replay = _call(
        auth,
        "POST",
        DECISIONS,
        body={
            "action": "payment.transfer",
            "params": {"amount": 5000, "to": "Acme"},
            "reasoning": "The prospect asked for pricing.",
            "evidence": {"signal": "reply"},
            "confidence": 0.8,
            "idempotency_key": "pay-1",
        },
    )
    assert replay.status_code == 200
    reused = _call(
        auth,
        "POST",
        DECISIONS,
        body={"action": "email.send", "params": {}, "reasoning": "x", "idempotency_key": "pay-1"},
    )
    assert reused.status_code == 409


# Hostile values, as the issue lists them, at every place a submission carries text,
# numbers or structure. Bodies are written as raw JSON text, since json.dumps would
# refuse 10,000 levels and a hostile client is under no such rule.
DEEP_MARK = "\x01deep\x01"
BIDI = "\u202e0005\u202c"  # shown marked to reviewers, not refused: any documented answer
hostile_texts = st.sampled_from(["a\x00b", "\x00", "\ud800", "x\udfffy", BIDI, "x" * (1 << 20)])
hostile_values = (
    hostile_texts
    | st.sampled_from([math.nan, math.inf, -math.inf, 2**63, -(2**63) - 1, 2**64, 10**400])
    | st.sampled_from([33, 1_000, 10_000]).map(lambda depth: (DEEP_MARK, depth))
)
PLACES = ["params value", "params key", "evidence value", "evidence key"] + [
    "reasoning",
    "action",
    "external_ref",
    "idempotency_key",
    "confidence",
]


def _hostile_body(email_body: dict, place: str, text: str, value) -> bytes:
    body = json.loads(json.dumps(email_body))
    deep = None
    if isinstance(value, tuple):
        value, deep = DEEP_MARK, value[1]
    if place == "params value":
        body["params"]["subject"] = value
    elif place == "params key":
        body["params"][text] = "x"
    elif place == "evidence value":
        body["evidence"]["signal"] = value
    elif place == "evidence key":
        body["evidence"][text] = "x"
    else:
        body[place] = value if place == "confidence" else text
    raw = json.dumps(body, allow_nan=True)  # ensure_ascii: surrogates become \ud800 escapes
    if deep:
        raw = raw.replace(json.dumps(DEEP_MARK), "[" * deep + "]" * deep)
    return raw.encode()


@pytest.mark.django_db(transaction=True)
@FUZZ
@given(place=st.sampled_from(PLACES), text=hostile_texts, value=hostile_values)
def test_hostile_values_anywhere_in_a_submission_are_refused_with_documented_errors(
    auth, decisions, email_body, place, text, value
):
    before = Decision.objects.count()
    body = _hostile_body(email_body, place, text, value)
    response = _call(auth, "POST", DECISIONS, body=body, media_type="application/json")
    used = value if place in {"params value", "evidence value", "confidence"} else text
    if used != BIDI:
        assert response.status_code in {400, 413}
        assert Decision.objects.count() == before


@pytest.mark.django_db(transaction=True)
@FUZZ
@given(
    name=st.sampled_from(["status", "cursor"]),
    value=st.sampled_from(["\x00", "a\x00b", "\u202e", "x" * 100_000, str(2**64), "²"]),
)
def test_hostile_query_values_are_refused_with_documented_errors(auth, decisions, name, value):
    response = _call(auth, "GET", DECISIONS, query={name: value})
    assert response.status_code == 400


@pytest.mark.django_db(transaction=True)
@FUZZ
@given(value=st.sampled_from(["\x00", "a\x00b", "\u202e", "x" * 100_000, str(2**64), "²"]))
def test_hostile_feedback_cursors_are_refused_with_documented_errors(auth, decisions, value):
    response = _call(auth, "GET", "/api/v1/feedback/", query={"after": value})
    assert response.status_code == 400
