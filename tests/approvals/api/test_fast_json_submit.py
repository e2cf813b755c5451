"""The API's hostile-input and submission tests, again, with the orjson parser in place."""

import pytest

from approvals.api import base
from approvals.api.fast_json import FastJSONParser
from tests.approvals.api import test_hostile as test_hostile_api
from tests.approvals.api import test_submit as test_api_submit

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def orjson_parser(monkeypatch):
    monkeypatch.setattr(base.AgentAPIView, "parser_classes", [FastJSONParser])


def _tests_of(module):
    return {
        f"{name}": value
        for name, value in vars(module).items()
        if name.startswith("test_") and callable(value)
    }


# Fixtures the imported tests use that are defined in their own modules.
body_text = test_hostile_api.body_text
globals().update(_tests_of(test_hostile_api))
globals().update(_tests_of(test_api_submit))
