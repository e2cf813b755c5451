"""The API's hostile-input and submission tests, again, with the orjson parser in place."""

import pytest

from approvals.api import base
from approvals.api.fast_json import FastJSONParser
from tests.approvals.api.rerun import submission_tests

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def orjson_parser(monkeypatch):
    monkeypatch.setattr(base.AgentAPIView, "parser_classes", [FastJSONParser])


globals().update(submission_tests())
