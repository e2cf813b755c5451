"""What an agent may do: its grant for an action, the params schema and the constraint.

JSON Schema validators are built once per action type version and kept per process.
"""

from dataclasses import dataclass

from jsonschema import Draft202012Validator, FormatChecker

from agents.models import ActionType, Agent, Grant
from agents.policy_rules import CelSyntaxError, compile_cel
from agents.selectors import agent_grants

_VALIDATORS: dict[tuple[int, str], Draft202012Validator] = {}
_FORMAT_CHECKER = FormatChecker()


@dataclass(frozen=True)
class ConstraintResult:
    allowed: bool
    message: str = ""


def grant_for(*, agent: Agent, action_key: str) -> Grant | None:
    return agent_grants(agent).get(action_key)


def _validator(action_type: ActionType) -> Draft202012Validator:
    cache_key = (action_type.pk, action_type.updated_at.isoformat())
    validator = _VALIDATORS.get(cache_key)
    if validator is None:
        if len(_VALIDATORS) > 1024:
            _VALIDATORS.clear()
        validator = _VALIDATORS[cache_key] = Draft202012Validator(
            action_type.params_schema or {}, format_checker=_FORMAT_CHECKER
        )
    return validator


def _path(error) -> str:
    path = "params"
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def params_errors(*, action_type: ActionType, params: dict) -> dict[str, list[str]]:
    """{"params.to[0]": ["'x' is not a 'email'"], ...}; empty when the params are valid."""
    errors: dict[str, list[str]] = {}
    for error in _validator(action_type).iter_errors(params):
        errors.setdefault(_path(error), []).append(error.message[:500])
    return errors


def check_constraint(
    *, agent: Agent, grant: Grant, params: dict, evidence: dict, confidence: float | None
) -> ConstraintResult:
    if not grant.constraint:
        return ConstraintResult(True)
    try:
        program = compile_cel(grant.constraint)
        result = program.execute(
            {
                "params": params,
                "evidence": evidence,
                "confidence": confidence,
                "agent": {"slug": agent.slug, "name": agent.name},
                "action": {"key": grant.action_type.key},
            }
        )
    except (CelSyntaxError, Exception) as exc:  # noqa: BLE001 - a scope that cannot be proven is refused
        return ConstraintResult(
            False,
            f"The grant constraint `{grant.constraint}` could not be evaluated "
            f"({type(exc).__name__}).",
        )
    if result is True:
        return ConstraintResult(True)
    return ConstraintResult(False, f"The grant constraint `{grant.constraint}` is not met.")
