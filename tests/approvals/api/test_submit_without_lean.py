"""The API's submission and hostile-input tests, again, with the lean submission path
(approvals/api/lean.py) off: the DRF view alone still answers every request as before."""

import pytest

from tests.approvals.api.rerun import submission_tests

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def without_lean_path(settings):
    # Read as each test client builds its middleware, on its first request.
    settings.AISPM_API_LEAN_VIEWS = {}


globals().update(submission_tests())
