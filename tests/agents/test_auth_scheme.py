"""The agent key's auth scheme is case-insensitive, as RFC 9110 §11.1 says of every scheme."""

import pytest
from rest_framework.test import APIClient

from agents.services import agent_key_issue
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def secret():
    return agent_key_issue(agent=AgentFactory(slug="scheme-agent")).secret


def list_decisions(authorization: str):
    return APIClient().get("/api/v1/decisions/", HTTP_AUTHORIZATION=authorization)


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_the_bearer_scheme_is_accepted_in_any_case(secret, scheme):
    assert list_decisions(f"{scheme} {secret}").status_code == 200


def test_more_than_one_space_after_the_scheme_is_accepted(secret):
    assert list_decisions(f"bearer   {secret}").status_code == 200


@pytest.mark.parametrize("scheme", ["Basic", "Bearerx", "Token", "bearer\t"])
def test_other_schemes_are_refused(secret, scheme):
    response = list_decisions(f"{scheme} {secret}")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_lower_case_scheme_with_a_wrong_key_is_still_refused(secret):
    response = list_decisions("bearer aispm_" + "0" * 32 + "_000000")
    assert response.status_code == 401
