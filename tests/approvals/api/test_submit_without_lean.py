"""The API's submission and hostile-input tests, again, with the lean submission path
(approvals/api/lean.py) off: the DRF view alone still answers every request as before."""

import pytest

from tests.approvals.api import test_hostile as test_hostile_api
from tests.approvals.api import test_submit as test_api_submit

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def without_lean_path(settings):
    # Read as each test client builds its middleware, on its first request.
    settings.AISPM_API_LEAN_VIEWS = {}


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
