"""Run the API's submission and hostile-input tests again, in another module, under
that module's own autouse fixture (another parser, the lean path off, ...)."""

from tests.approvals.api import test_hostile, test_submit


def submission_tests() -> dict:
    """The test functions of both modules, and the module-level fixture they use, for
    `globals().update(...)` in the module that runs them again."""
    found = {"body_text": test_hostile.body_text}
    for module in (test_hostile, test_submit):
        found.update(
            {
                name: value
                for name, value in vars(module).items()
                if name.startswith("test_") and callable(value)
            }
        )
    return found
