"""The posture check registry: each check is a function that returns the subjects it flags.

A check declares its id, the buyer's question it bears on, its severity and a title.
`posture_run` (services) calls every check, opens a finding for each hit and resolves the
open findings of that check whose subject no longer comes back.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from agents.models import Agent

from ..models import Finding


@dataclass(frozen=True)
class Hit:
    subject: str
    message: str
    fix_url: str = ""
    agent: Agent | None = None
    evidence: dict = field(default_factory=dict)
    # A hit may be more or less severe than its check's default.
    severity: str = ""


@dataclass(frozen=True)
class Check:
    id: str
    area: str
    question: str
    severity: str
    title: str
    run: Callable[[datetime], list[Hit]]
    # Provisional: the evidence it needs lands with another issue; until then it may
    # never fire. Shown on the page and in the report.
    provisional: str = ""


CHECKS: dict[str, Check] = {}


def check(*, id: str, question: str, severity: str, title: str, provisional: str = "") -> Callable:
    if question not in Finding.Question.values or severity not in Finding.Severity.values:
        raise ValueError(f"check {id}: bad question or severity")

    def register(run: Callable[[datetime], list[Hit]]):
        CHECKS[id] = Check(
            id=id,
            area=id.split(".", 1)[0],
            question=question,
            severity=severity,
            title=title,
            run=run,
            provisional=provisional,
        )
        return run

    return register


def all_checks() -> list[Check]:
    from . import (  # noqa: F401 - importing registers the checks
        checks_access,
        checks_behaviour,
        checks_credentials,
        checks_detection,
        checks_evidence,
        checks_gates,
        checks_privilege,
    )

    return list(CHECKS.values())
