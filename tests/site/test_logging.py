"""Structured JSON logs: one object per line, request context, and no secrets."""

import io
import json
import logging
import re
import sys

import pytest
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, StreamingHttpResponse
from django.urls import path
from rest_framework.test import APIClient

from agents import keys
from agents.services import agent_key_issue
from aispm_site import urls as site_urls
from aispm_site.logging import JSONFormatter, bind_decision_id
from tests.factories import (
    ActionTypeFactory,
    AgentFactory,
    BehaviourVersionFactory,
    DecisionFactory,
    GrantFactory,
    UserFactory,
    reviewer,
)

pytestmark = pytest.mark.django_db

view_log = logging.getLogger("tests.site.view")


@login_required
def _logging_view(request):
    view_log.info("inside the view")
    return HttpResponse("ok")


def _decision_view(request, decision_id):
    bind_decision_id(decision_id)
    view_log.info("working on a decision")
    return HttpResponse("ok")


def _streaming_view(request):
    def body():
        yield b"first\n"
        view_log.info("while streaming")
        yield b"second\n"

    return StreamingHttpResponse(body())


def _failing_view(request):
    raise RuntimeError("the view broke")


# The site's URLs plus a few views that log, so tests can see a view's own lines.
urlpatterns = [
    path("test-log/", _logging_view),
    path("test-log/decision/<str:decision_id>/", _decision_view),
    path("test-log/stream/", _streaming_view),
    path("test-log/fail/", _failing_view),
    *site_urls.urlpatterns,
]


@pytest.fixture
def log_urls(settings):
    settings.ROOT_URLCONF = __name__


@pytest.fixture
def json_log():
    """What the configured console handler writes, read back as parsed lines."""
    handler = next(
        h for h in logging.getLogger().handlers if isinstance(h.formatter, JSONFormatter)
    )
    stream = io.StringIO()
    previous = handler.setStream(stream)

    class Output:
        @property
        def text(self) -> str:
            return stream.getvalue()

        @property
        def lines(self) -> list[dict]:
            return [json.loads(line) for line in self.text.split("\n") if line]

        def requests(self) -> list[dict]:
            return [line for line in self.lines if line["logger"] == "aispm.request"]

    yield Output()
    handler.setStream(previous)


def format_record(message, *args, exc_info=None, **extra) -> str:
    record = logging.LogRecord("aispm.test", logging.WARNING, __file__, 1, message, args, exc_info)
    record.__dict__.update(extra)
    return JSONFormatter().format(record)


# The formatter


def test_a_record_becomes_one_json_object_with_the_standard_fields():
    line = json.loads(format_record("hello %s", "world"))

    assert line["level"] == "WARNING"
    assert line["logger"] == "aispm.test"
    assert line["message"] == "hello world"
    assert line["request_id"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])
    assert "user" not in line and "agent" not in line and "decision_id" not in line


FORGED = 'reasoning\r\n{"level": "CRITICAL", "logger": "aispm.audit", "message": "forged"}\r\n'


def test_crlf_in_agent_text_cannot_forge_a_log_line():
    output = format_record("agent said: %s", FORGED)

    assert "\n" not in output and "\r" not in output
    assert len(output.splitlines()) == 1
    assert json.loads(output)["message"] == f"agent said: {FORGED}"


def test_the_configured_handler_writes_crlf_text_as_one_line(json_log):
    logging.getLogger("aispm.test").warning(FORGED)

    assert json_log.text.count("\n") == 1 and json_log.text.endswith("\n")
    (line,) = json_log.lines
    assert line["message"] == FORGED
    assert line["level"] == "WARNING"


def test_other_line_breaks_are_escaped_too():
    text = "a\u2028b\u2029c\x85d\x0be\x0cf\x1cg"

    output = format_record(text)

    assert output.isascii()
    assert len(output.splitlines()) == 1
    assert json.loads(output)["message"] == text


def test_an_exception_is_included_with_its_traceback():
    try:
        raise ValueError("bad value")
    except ValueError:
        exc_info = sys.exc_info()

    line = json.loads(format_record("failed", exc_info=exc_info))

    assert line["message"] == "failed"
    assert "Traceback" in line["exception"]
    assert "ValueError: bad value" in line["exception"]


def test_plain_extra_values_are_kept_and_objects_are_dropped():
    class Request:
        def __str__(self):
            return "<WSGIRequest: GET '/api/v1/decisions/?token=secret'>"

    line = json.loads(format_record("x", status_code=404, request=Request(), note="n"))

    assert line["status_code"] == 404
    assert line["note"] == "n"
    assert "request" not in line
    assert "secret" not in json.dumps(line)


# Redaction, as a second line of defence


def test_agent_keys_and_webhook_secrets_are_masked_in_messages_and_args(json_log):
    key = keys.generate_key()
    webhook_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

    logging.getLogger("aispm.test").warning("key %s and %s", key, webhook_secret)
    logging.getLogger("aispm.test").warning(f"inline {key}")
    logging.getLogger("aispm.test").warning("as a dict %(k)s", {"k": key})

    messages = [line["message"] for line in json_log.lines]
    assert messages == [
        "key [REDACTED] and [REDACTED]",
        "inline [REDACTED]",
        "as a dict [REDACTED]",
    ]
    assert key not in json_log.text
    assert "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" not in json_log.text


def test_a_key_in_an_exception_message_is_masked(json_log):
    key = keys.generate_key()
    try:
        raise ValueError(f"could not use {key}")
    except ValueError:
        logging.getLogger("aispm.test").exception("failed")

    assert key not in json_log.text
    assert "could not use [REDACTED]" in json_log.lines[0]["exception"]


def test_text_that_merely_looks_like_a_prefix_is_left_alone(json_log):
    logging.getLogger("aispm.test").warning("key prefix aispm_AbC123 is fine")

    assert json_log.lines[0]["message"] == "key prefix aispm_AbC123 is fine"


# The request middleware


def test_each_response_carries_a_generated_request_id(client, json_log):
    first = client.get("/healthz/")
    second = client.get("/healthz/")

    assert re.fullmatch(r"[0-9a-f]{32}", first["X-Request-ID"])
    assert first["X-Request-ID"] != second["X-Request-ID"]
    assert [line["request_id"] for line in json_log.requests()] == [
        first["X-Request-ID"],
        second["X-Request-ID"],
    ]


@pytest.mark.parametrize(
    "incoming",
    ["0f8fad5b-d9cb-469f-a165-70867728950e", "req-12345678", "abcdef0123456789.edge_1"],
)
def test_a_well_formed_incoming_request_id_is_kept(client, json_log, incoming):
    response = client.get("/healthz/", HTTP_X_REQUEST_ID=incoming)

    assert response["X-Request-ID"] == incoming
    assert json_log.requests()[0]["request_id"] == incoming


@pytest.mark.parametrize(
    "incoming",
    [
        "short",
        "x" * 129,
        "abcdefgh\r\nX-Injected: 1",
        'abcdefgh", "level": "CRITICAL',
        "abc defgh ijkl",
        "-leading-dash-id",
        "",
    ],
)
def test_a_malformed_incoming_request_id_is_replaced(client, json_log, incoming):
    response = client.get("/healthz/", HTTP_X_REQUEST_ID=incoming)

    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])
    assert "Injected" not in json_log.text and "CRITICAL" not in json_log.text


def test_one_line_per_request_with_method_path_status_and_duration(client, json_log):
    client.get("/healthz/?token=aispm_should_not_be_logged&x=1")

    (line,) = json_log.requests()
    assert line["level"] == "INFO"
    assert line["message"] == "GET /healthz/ 200"
    assert (line["method"], line["path"], line["status"]) == ("GET", "/healthz/", 200)
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert "should_not_be_logged" not in json_log.text


def test_headers_cookies_and_bodies_are_never_logged(client, json_log):
    user = UserFactory(username="carol")
    client.force_login(user)
    session_cookie = client.cookies["sessionid"].value

    client.post(
        "/accounts/logout/",
        data="secret-body-text",
        content_type="text/plain",
        HTTP_AUTHORIZATION="Bearer secret-authorization-value",
        HTTP_X_API_KEY="secret-header-value",
    )

    assert json_log.requests()
    assert session_cookie not in json_log.text
    for secret in ("secret-body-text", "secret-authorization-value", "secret-header-value"):
        assert secret not in json_log.text


def test_lines_logged_during_a_request_name_the_request_and_the_user(client, json_log, log_urls):
    client.force_login(UserFactory(username="dave"))

    response = client.get("/test-log/")

    (view_line,) = [line for line in json_log.lines if line["logger"] == "tests.site.view"]
    (request_line,) = json_log.requests()
    assert view_line["message"] == "inside the view"
    for line in (view_line, request_line):
        assert line["request_id"] == response["X-Request-ID"]
        assert line["user"] == "dave"
        assert "agent" not in line


def test_an_anonymous_request_names_no_user(client, json_log):
    client.get("/accounts/login/")

    (line,) = json_log.requests()
    assert "user" not in line and "agent" not in line


def test_the_request_line_names_the_user_even_when_the_view_did_not_ask(client, json_log):
    client.force_login(UserFactory(username="gina"))

    client.get("/healthz/")

    assert json_log.requests()[0]["user"] == "gina"


def test_django_request_warnings_carry_the_request_id(client, json_log):
    client.force_login(UserFactory(username="erin"))

    response = client.get("/no-such-page/")

    warning = next(line for line in json_log.lines if line["logger"] == "django.request")
    assert warning["message"] == "Not Found: /no-such-page/"
    assert warning["request_id"] == response["X-Request-ID"]
    assert warning["user"] == "erin"


def test_an_unhandled_error_is_logged_with_its_traceback_and_request_id(client, json_log, log_urls):
    client.raise_request_exception = False

    response = client.get("/test-log/fail/")

    assert response.status_code == 500
    error = next(line for line in json_log.lines if line["logger"] == "django.request")
    assert error["level"] == "ERROR"
    assert error["request_id"] == response["X-Request-ID"]
    assert "RuntimeError: the view broke" in error["exception"]
    assert json_log.requests()[0]["status"] == 500


def test_a_streamed_body_logs_within_its_request(client, json_log, log_urls):
    response = client.get("/test-log/stream/")
    body = b"".join(response.streaming_content)

    assert body == b"first\nsecond\n"
    streamed = next(line for line in json_log.lines if line["message"] == "while streaming")
    assert streamed["request_id"] == response["X-Request-ID"]


def test_a_view_can_name_the_decision_it_works_on(client, json_log, log_urls):
    response = client.get("/test-log/decision/abc-123/")

    view_line = next(line for line in json_log.lines if line["logger"] == "tests.site.view")
    assert view_line["decision_id"] == "abc-123"
    assert view_line["request_id"] == response["X-Request-ID"]


def test_the_decision_id_comes_from_the_url_when_there_is_one(client, json_log):
    decision = DecisionFactory()
    client.force_login(reviewer(username="frank"))

    response = client.get(f"/inbox/{decision.pk}/")

    assert response.status_code == 200
    (line,) = json_log.requests()
    assert line["decision_id"] == str(decision.pk)
    assert line["user"] == "frank"


def test_the_context_is_cleared_after_the_request(client, json_log):
    client.get("/healthz/", HTTP_X_REQUEST_ID="req-finished-1")

    logging.getLogger("aispm.test").warning("after the request")

    assert json_log.lines[-1]["request_id"] is None


# Agent requests


@pytest.fixture
def agent_api(db):
    action_type = ActionTypeFactory(key="thing.do")
    agent = AgentFactory(slug="log-agent")
    agent.active_behaviour = BehaviourVersionFactory(agent=agent, number=1)
    agent.save()
    GrantFactory(agent=agent, action_type=action_type)
    issued = agent_key_issue(agent=agent)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    return api, issued.secret


def test_agent_requests_name_the_agent_and_the_decision(agent_api, json_log):
    api, secret = agent_api

    created = api.post(
        "/api/v1/decisions/",
        {"action": "thing.do", "params": {"what": "x"}, "reasoning": "Because."},
        format="json",
    )
    decision_id = created.json()["id"]
    fetched = api.get(f"/api/v1/decisions/{decision_id}/")

    submit_line, fetch_line = json_log.requests()
    assert submit_line["agent"] == "log-agent"
    assert submit_line["status"] == 201
    assert "user" not in submit_line
    assert fetch_line["agent"] == "log-agent"
    assert fetch_line["decision_id"] == decision_id
    assert fetch_line["request_id"] == fetched["X-Request-ID"]
    assert secret not in json_log.text


def test_a_request_with_a_bad_key_names_no_agent(json_log):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {keys.generate_key()}")

    response = api.get("/api/v1/decisions/")

    assert response.status_code == 401
    line = json_log.requests()[0]
    assert line["status"] == 401
    assert "agent" not in line and "user" not in line
