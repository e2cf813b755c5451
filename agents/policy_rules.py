"""The shape of policy rules and grant constraints, checked when they are saved.

Evaluation lives in approvals.policy; this module only knows what a valid rule is,
so that every place that saves a policy (apply_governance, the behaviour screens)
rejects the same things with the same messages.
"""

import re
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache

import cel

from .models import Outcome, Risk

RULE_KEYS = {
    "id",
    "action",
    "when",
    "outcome",
    "approvals",
    "ttl",
    "risk",
    "bulk",
    "reason",
    "step_up",
}
STEP_UP_METHODS = {"passkey"}
TTL_PATTERN = re.compile(r"^(\d+)([smhd])$")
TTL_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
MAX_TTL = timedelta(days=30)
MAX_APPROVALS = 10


class CelSyntaxError(ValueError):
    pass


@lru_cache(maxsize=4096)
def compile_cel(expression: str) -> cel.Program:
    """Compile a CEL expression once; the same text always yields the same program."""
    try:
        return cel.compile(expression)
    except (ValueError, RuntimeError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else "invalid expression"
        raise CelSyntaxError(first_line) from None


def parse_ttl(value: str) -> timedelta:
    match = TTL_PATTERN.match(str(value).strip())
    if not match:
        raise ValueError(f"ttl must look like 30m, 4h or 2d (got {value!r})")
    ttl = timedelta(**{TTL_UNITS[match.group(2)]: int(match.group(1))})
    if ttl <= timedelta(0) or ttl > MAX_TTL:
        raise ValueError(f"ttl must be more than 0 and at most 30d (got {value!r})")
    return ttl


@dataclass(frozen=True)
class RuleProblem:
    path: str
    message: str

    def __str__(self):
        return f"{self.path}: {self.message}"


def validate_policy(
    rules, *, irreversible_actions: dict[str, bool], path: str = "policy"
) -> list[RuleProblem]:
    """Every problem with a list of rules. `irreversible_actions` maps known action keys
    to their irreversible flag."""
    problems: list[RuleProblem] = []
    if not isinstance(rules, list):
        return [RuleProblem(path, "must be a list of rules")]
    seen_ids: set[str] = set()
    for index, rule in enumerate(rules):
        here = f"{path}[{index}]"
        if not isinstance(rule, dict):
            problems.append(RuleProblem(here, "must be a mapping"))
            continue
        for key in sorted(set(rule) - RULE_KEYS):
            problems.append(RuleProblem(f"{here}.{key}", "unknown key"))
        rule_id = rule.get("id")
        if not isinstance(rule_id, str) or not rule_id.strip():
            problems.append(RuleProblem(f"{here}.id", "is required and must be a string"))
        elif rule_id in seen_ids:
            problems.append(RuleProblem(f"{here}.id", f"duplicate rule id {rule_id!r}"))
        else:
            seen_ids.add(rule_id)
        action = rule.get("action")
        if action is not None and action != "*":
            if not isinstance(action, str):
                problems.append(RuleProblem(f"{here}.action", "must be an action key"))
            elif action not in irreversible_actions:
                problems.append(RuleProblem(f"{here}.action", f"unknown action {action!r}"))
        outcome = rule.get("outcome")
        if outcome not in Outcome.values:
            problems.append(RuleProblem(f"{here}.outcome", "must be one of allow, review, deny"))
        elif outcome == Outcome.ALLOW:
            targets = (
                [action]
                if isinstance(action, str) and action != "*"
                else list(irreversible_actions)
            )
            irreversible = [key for key in targets if irreversible_actions.get(key)]
            if irreversible:
                problems.append(
                    RuleProblem(
                        f"{here}.outcome",
                        "allow is not permitted on irreversible action "
                        + ", ".join(repr(k) for k in sorted(irreversible)),
                    )
                )
        when = rule.get("when")
        if when is not None:
            if not isinstance(when, str) or not when.strip():
                problems.append(RuleProblem(f"{here}.when", "must be a CEL expression"))
            else:
                try:
                    compile_cel(when)
                except CelSyntaxError as exc:
                    problems.append(RuleProblem(f"{here}.when", f"CEL syntax error: {exc}"))
        approvals = rule.get("approvals", 1)
        if (
            isinstance(approvals, bool)
            or not isinstance(approvals, int)
            or not 1 <= approvals <= MAX_APPROVALS
        ):
            problems.append(
                RuleProblem(f"{here}.approvals", f"must be an integer from 1 to {MAX_APPROVALS}")
            )
        if "ttl" in rule:
            try:
                parse_ttl(rule["ttl"])
            except ValueError as exc:
                problems.append(RuleProblem(f"{here}.ttl", str(exc)))
        if "risk" in rule and rule["risk"] not in Risk.values:
            problems.append(
                RuleProblem(f"{here}.risk", "must be one of low, medium, high, critical")
            )
        if "bulk" in rule and not isinstance(rule["bulk"], bool):
            problems.append(RuleProblem(f"{here}.bulk", "must be true or false"))
        if "step_up" in rule and rule["step_up"] not in STEP_UP_METHODS:
            problems.append(RuleProblem(f"{here}.step_up", "must be passkey"))
        if "reason" in rule and not isinstance(rule["reason"], str):
            problems.append(RuleProblem(f"{here}.reason", "must be text"))
    return problems


def validate_constraint(expression, *, path: str = "constraint") -> list[RuleProblem]:
    if expression in (None, ""):
        return []
    if not isinstance(expression, str):
        return [RuleProblem(path, "must be a CEL expression")]
    try:
        compile_cel(expression)
    except CelSyntaxError as exc:
        return [RuleProblem(path, f"CEL syntax error: {exc}")]
    return []
