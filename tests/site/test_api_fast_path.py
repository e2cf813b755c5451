"""The agent API takes a short middleware chain; pages keep the whole one."""

import pytest
from django.http import JsonResponse
from django.urls import path
from rest_framework.test import APIClient

from agents.services import agent_key_issue
from aispm_site import urls as site_urls
from tests.factories import AgentFactory, UserFactory
from tests.site.test_logging import json_log  # noqa: F401 - a fixture

pytestmark = pytest.mark.django_db


def _machinery(request):
    """What the middleware below ApiFastPathMiddleware would have put on the request."""
    return JsonResponse(
        {
            name: hasattr(request, attribute)
            for name, attribute in [
                ("session", "session"),
                ("user", "user"),
                ("messages", "_messages"),
                ("htmx", "htmx"),
                ("csp_nonce", "_csp_nonce"),
            ]
        }
    )


urlpatterns = [
    path("api/v1/test-machinery/", _machinery),
    path("test-machinery/", _machinery),
    *site_urls.urlpatterns,
]


@pytest.fixture
def machinery_urls(settings):
    settings.ROOT_URLCONF = __name__


@pytest.fixture
def agent_client():
    agent = AgentFactory(slug="fast-agent")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {agent_key_issue(agent=agent).secret}")
    return client


def test_an_agent_api_request_skips_session_auth_messages_and_htmx(client, machinery_urls):
    api = client.get("/api/v1/test-machinery/").json()
    page = client.get("/test-machinery/").json()

    assert api == {
        "session": False,
        "user": False,
        "messages": False,
        "htmx": False,
        "csp_nonce": True,
    }
    assert page == dict.fromkeys(api, True)


def test_an_api_response_keeps_the_security_headers_and_request_id(agent_client):
    response = agent_client.get("/api/v1/decisions/", HTTP_X_REQUEST_ID="agent-request-0001")

    assert response.status_code == 200
    assert response["X-Request-ID"] == "agent-request-0001"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
    assert int(response["Content-Length"]) == len(response.content)
    assert "Set-Cookie" not in response and not response.cookies


def test_an_api_request_is_logged_with_its_id_and_agent(agent_client, json_log):  # noqa: F811
    agent_client.get("/api/v1/decisions/", HTTP_X_REQUEST_ID="agent-request-0002")

    (line,) = json_log.requests()
    assert line["request_id"] == "agent-request-0002"
    assert line["agent"] == "fast-agent"
    assert (line["method"], line["path"], line["status"]) == ("GET", "/api/v1/decisions/", 200)


def test_an_api_error_still_has_the_envelope_and_headers(client):
    response = client.get("/api/v1/decisions/", HTTP_AUTHORIZATION="Bearer nonsense")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Request-ID"]


def test_an_unknown_api_path_is_a_404_with_the_headers(client):
    response = client.get("/api/v1/no-such-thing/")

    assert response.status_code == 404
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Request-ID"]


def test_pages_still_get_a_csrf_cookie_and_a_session():
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    login = client.get("/accounts/login/")
    assert "csrftoken" in login.cookies

    UserFactory(username="page-user", password="a-long-enough-password-1")
    refused = client.post(
        "/accounts/login/", {"username": "page-user", "password": "a-long-enough-password-1"}
    )
    assert refused.status_code == 403  # no CSRF token

    token = client.cookies["csrftoken"].value
    response = client.post(
        "/accounts/login/",
        {
            "username": "page-user",
            "password": "a-long-enough-password-1",
            "csrfmiddlewaretoken": token,
        },
    )
    assert response.status_code == 302
    assert "sessionid" in response.cookies
