"""What an agent may do: its grant for an action, the params schema and the constraint.

Params are validated with jsonschema-rs, whose `pattern` follows ECMA-262 as the JSON
Schema spec requires (Python's `re` lets `^...$` match before a trailing newline).
Destination formats (see approvals.formats) are strict, and valid params come back in
canonical form: what policy, anomaly rules and connectors see. Validators are built
once per action type version and kept per process.
"""

import copy
import json
import math
from dataclasses import dataclass, field
from typing import Any

import jsonschema_rs

from agents.models import ActionType, Agent, Grant
from agents.params_schema import compile_params_schema, schema_problem
from agents.policy_rules import CelSyntaxError, compile_cel
from agents.selectors import agent_grants

from . import formats

MAX_PARAMS_DEPTH = 32
_FORMATS = {name: formats.conforms(name) for name in formats.CANONICAL}
_VALIDATORS: dict[tuple[int, str], "_Validator"] = {}


@dataclass(frozen=True)
class ConstraintResult:
    allowed: bool
    message: str = ""


@dataclass(frozen=True)
class CheckedParams:
    """The canonical params, or the errors by path. `originals` maps the path of each
    value that canonicalisation changed to what the agent sent."""

    params: dict
    errors: dict[str, list[str]] = field(default_factory=dict)
    originals: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Validator:
    schema_error: str = ""
    validator: Any = None
    canonicalises: bool = False


def grant_for(*, agent: Agent, action_key: str) -> Grant | None:
    return agent_grants(agent).get(action_key)


def _uses_destination_formats(schema) -> bool:
    if isinstance(schema, dict):
        if schema.get("format") in formats.CANONICAL:
            return True
        return any(_uses_destination_formats(value) for value in schema.values())
    if isinstance(schema, list):
        return any(_uses_destination_formats(value) for value in schema)
    return False


def _validator(action_type: ActionType) -> _Validator:
    cache_key = (action_type.pk, action_type.updated_at.isoformat())
    validator = _VALIDATORS.get(cache_key)
    if validator is None:
        if len(_VALIDATORS) > 1024:
            _VALIDATORS.clear()
        schema = action_type.params_schema or {}
        problem = schema_problem(schema)
        if problem:
            # A stored schema that does not compile (as ECMA-262 for its patterns)
            # refuses every submission: fail closed.
            validator = _Validator(schema_error=problem[1][:300])
        else:
            validator = _Validator(
                validator=compile_params_schema(schema, formats=_FORMATS),
                canonicalises=_uses_destination_formats(schema),
            )
        _VALIDATORS[cache_key] = validator
    return validator


def _path(parts) -> str:
    path = "params"
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _not_plain_json(params) -> str:
    """Why `params` cannot be handed to the validator; empty when it can."""
    stack = [(params, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_PARAMS_DEPTH:
            return f"params are nested more than {MAX_PARAMS_DEPTH} levels."
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    return "params have a key that is not a string."
                stack.append((key, depth + 1))
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, str):
            try:
                value.encode()
            except UnicodeEncodeError:
                return "params contain a lone surrogate, which is not valid Unicode."
        elif isinstance(value, float):
            if not math.isfinite(value):
                return "params contain a number that is not finite."
        elif not (value is None or isinstance(value, (bool, int))):
            return f"params contain a {type(value).__name__}, which is not JSON."
    return ""


def _message(error) -> str:
    kind = error.kind
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.Format):
        why = formats.reason(kind.format, error.instance)
        if why:
            shown = json.dumps(error.instance, ensure_ascii=False)[:200]
            return f"{shown} is not {formats.DESCRIBED[kind.format]}: {why}"
    return error.message


def _errors(validator, params) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for error in validator.iter_errors(params):
        errors.setdefault(_path(error.instance_path), []).append(_message(error)[:500])
    return errors


def _pointer(location: str) -> list[str]:
    return [part.replace("~1", "/").replace("~0", "~") for part in location.split("/")[1:]]


def _canonical(validator, params: dict) -> tuple[dict, dict[str, Any]]:
    """The params with each value that passed a destination format in canonical form."""
    originals: dict[str, Any] = {}
    canonical = params
    for unit in validator.evaluate(params).annotations():
        fmt = unit["annotations"]
        if not unit["schemaLocation"].endswith("/format") or fmt not in formats.CANONICAL:
            continue
        container, parts, index = None, [], None
        value = canonical
        for part in _pointer(unit["instanceLocation"]):
            container = value
            index = int(part) if isinstance(value, list) else part
            parts.append(index)
            value = value[index]
        if not isinstance(value, str) or container is None:
            continue
        new = formats.CANONICAL[fmt](value)
        if new == value:
            continue
        if canonical is params:
            canonical = copy.deepcopy(params)
            container = canonical
            for part in parts[:-1]:
                container = container[part]
        container[index] = new
        originals[_path(parts)] = value
    return canonical, originals


def checked_params(*, action_type: ActionType, params: dict) -> CheckedParams:
    """Validate params against the action type's schema and canonicalise destinations.

    The canonical params are checked against the schema again, so what is stored and
    executed always satisfies it.
    """
    problem = _not_plain_json(params)
    if problem:
        return CheckedParams(params, {"params": [problem]})
    checker = _validator(action_type)
    if checker.schema_error:
        return CheckedParams(
            params, {"params": [f"The action's params schema is invalid: {checker.schema_error}"]}
        )
    validator = checker.validator
    if not validator.is_valid(params):
        return CheckedParams(params, _errors(validator, params))
    if not checker.canonicalises:
        return CheckedParams(params)
    canonical, originals = _canonical(validator, params)
    if originals and not validator.is_valid(canonical):
        return CheckedParams(params, _errors(validator, canonical), originals)
    return CheckedParams(canonical, originals=originals)


def params_errors(*, action_type: ActionType, params: dict) -> dict[str, list[str]]:
    """{"params.to[0]": ["..."], ...}; empty when the params are valid."""
    return checked_params(action_type=action_type, params=params).errors


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
