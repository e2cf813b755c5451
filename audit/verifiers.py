"""Checks over records that other apps own, run by `audit_verify`.

The audit app imports nothing from the apps above it, so they register their checks
here when Django starts (approvals registers `approvals`: signed approvals).
A check returns how many records it examined and one message per record that fails.
"""

from collections.abc import Callable

Check = Callable[[], tuple[int, list]]
_checks: dict[str, Check] = {}


def verifier_register(name: str, check: Check) -> None:
    _checks[name] = check


def verifier_run(name: str) -> tuple[int, list]:
    return _checks[name]()
