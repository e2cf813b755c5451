"""The governance file's shape (a JSON Schema) and its meaning (what the schema
cannot say), as ``path: message`` lines in the order of the file."""

import math
import re
from collections.abc import Iterator
from email.utils import parseaddr
from string import Formatter
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email
from jsonschema import Draft202012Validator, validators
from jsonschema import exceptions as jsonschema_exceptions
from jsonschema.exceptions import SchemaError

from aispm_site import hostile

from .. import crypto
from ..anomaly_rules import validate_anomaly_rules
from ..models import ActionType, Outcome, Risk
from ..params_schema import ecma_search, schema_problem
from ..policy_rules import validate_constraint, validate_policy

_TEXT = {"type": "string", "minLength": 1}
_KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
_SLUG_PATTERN = r"^[-a-zA-Z0-9_]+$"
_ENV_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"


def _connector_variant(kind: str, properties: dict, required: list[str]) -> dict:
    return {
        "if": {"required": ["type"], "properties": {"type": {"const": kind}}},
        "then": {
            "properties": {"type": {}, **properties},
            "required": required,
            "additionalProperties": False,
        },
    }


# The shape of the file itself. Rules inside `policy` are left to validate_policy,
# which every place that saves a policy shares.
FILE_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "action_types": {"type": "array", "items": {"$ref": "#/$defs/action_type"}},
        "agents": {"type": "array", "items": {"$ref": "#/$defs/agent"}},
    },
    "$defs": {
        "action_type": {
            "type": "object",
            "additionalProperties": False,
            "required": ["key", "name", "params_schema", "irreversible"],
            "properties": {
                "key": {
                    **_TEXT,
                    "maxLength": 100,
                    "pattern": _KEY_PATTERN,
                    "x-message": "must be an action key such as email.send",
                },
                "name": {**_TEXT, "maxLength": 200},
                "summary": {"type": "string", "maxLength": 500},
                "params_schema": {"type": "object"},
                "irreversible": {"type": "boolean"},
                "risk": {"enum": Risk.values},
                "default_outcome": {"enum": Outcome.values},
                "connector": {"$ref": "#/$defs/connector"},
                "anomalies": {"type": "array", "items": {"type": "object"}},
            },
        },
        "connector": {
            "type": "object",
            "required": ["type"],
            "properties": {"type": {"enum": ActionType.Connector.values}},
            "allOf": [
                _connector_variant(
                    "webhook",
                    {
                        "url": {**_TEXT, "maxLength": 2000},
                        "secret_env": {
                            **_TEXT,
                            "pattern": _ENV_PATTERN,
                            "x-message": "must be an environment variable name",
                        },
                        "secret": _TEXT,
                    },
                    ["url"],
                ),
                _connector_variant("email", {"from": _TEXT}, []),
                _connector_variant("none", {}, []),
            ],
        },
        "agent": {
            "type": "object",
            "additionalProperties": False,
            "required": ["slug", "name"],
            "properties": {
                "slug": {
                    **_TEXT,
                    "maxLength": 100,
                    "pattern": _SLUG_PATTERN,
                    "x-message": "must be a slug: letters, digits, - and _",
                },
                "name": {**_TEXT, "maxLength": 200},
                "owner": {"type": ["string", "null"], "minLength": 1},
                "callback_url": {"type": ["string", "null"], "maxLength": 500},
                "grants": {"type": "array", "items": {"$ref": "#/$defs/grant"}},
                "behaviour": {"$ref": "#/$defs/behaviour"},
                "anomalies": {"type": "array", "items": {"type": "object"}},
            },
        },
        "grant": {
            "type": "object",
            "additionalProperties": False,
            "required": ["action"],
            "properties": {
                "action": _TEXT,
                "limit_per_hour": {
                    "type": ["integer", "null"],
                    "minimum": 1,
                    "maximum": hostile.INT32_MAX,
                },
                "constraint": {"type": ["string", "null"]},
            },
        },
        "behaviour": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "instructions": {"type": "string"},
                "settings": {"type": "object"},
                "policy": {},
            },
        },
    },
}


def _ecma_pattern(validator, pattern, instance, schema):
    # Python's re would let `$` match before a trailing line break: "sdr-agent\n" passed.
    if validator.is_type(instance, "string") and not ecma_search(pattern, instance):
        yield jsonschema_exceptions.ValidationError(f"{instance!r} does not match {pattern!r}")


_FILE_VALIDATOR = validators.extend(Draft202012Validator, {"pattern": _ecma_pattern})(FILE_SCHEMA)

_TYPE_WORDS = {
    "string": "text",
    "object": "a mapping",
    "array": "a list",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


class GovernanceInvalid(Exception):
    """The file cannot be applied; `errors` holds one line per problem."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


# Validation


def _path(prefix: str, parts) -> str:
    out = prefix
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


def _where(path: str) -> str:
    return path or "(top level)"


def _json_problems(value, parts: list) -> list[tuple[str, str]]:
    problems = []
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                problems.append((_path("", parts), f"key {key!r} must be text; put it in quotes"))
            else:
                problems += _json_problems(item, [*parts, key])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            problems += _json_problems(item, [*parts, index])
    elif isinstance(value, float) and not math.isfinite(value):
        problems.append((_path("", parts), "must be a finite number"))
    elif value is not None and not isinstance(value, str | int | float | bool):
        problems.append((_path("", parts), f"{type(value).__name__} values are not allowed"))
    return problems


def _schema_problems(data) -> list[tuple[str, str]]:
    problems = []
    errors = sorted(
        _FILE_VALIDATOR.iter_errors(data),
        key=lambda e: [(0, p) if isinstance(p, int) else (1, str(p)) for p in e.absolute_path],
    )
    for error in errors:
        parts = list(error.absolute_path)
        kind, expected = error.validator, error.validator_value
        if kind == "additionalProperties":
            allowed = sorted(error.schema.get("properties", {}))
            for key in error.instance:
                if key not in allowed:
                    problems.append(
                        (
                            _path("", [*parts, key]),
                            "unknown key; expected one of " + ", ".join(allowed)
                            if allowed
                            else "unknown key; this takes no other keys",
                        )
                    )
        elif kind == "required":
            for key in expected:
                if key not in error.instance:
                    problems.append((_path("", [*parts, key]), "is required"))
        elif kind == "type":
            kinds = expected if isinstance(expected, list) else [expected]
            words = " or ".join(_TYPE_WORDS.get(k, k) for k in kinds)
            problems.append((_path("", parts), f"must be {words}"))
        elif kind == "enum":
            problems.append(
                (_path("", parts), "must be one of " + ", ".join(str(v) for v in expected))
            )
        elif kind == "pattern":
            message = error.schema.get("x-message", f"must match {expected}")
            problems.append((_path("", parts), f"{message} (got {error.instance!r})"))
        elif kind == "minLength" and expected == 1:
            problems.append((_path("", parts), "must not be empty"))
        elif kind == "maxLength":
            problems.append((_path("", parts), f"must be at most {expected} characters"))
        elif kind == "minimum":
            problems.append((_path("", parts), f"must be at least {expected}"))
        else:
            problems.append((_path("", parts), error.message))
    return problems


def _entries(data: dict, name: str) -> Iterator[tuple[int, dict]]:
    items = data.get(name)
    if isinstance(items, list):
        for index, item in enumerate(items):
            if isinstance(item, dict):
                yield index, item


def _is_http_url(value: str) -> bool:
    try:
        URLValidator(schemes=["http", "https"])(value)
    except ValidationError:
        return False
    return True


def _is_email(value: str) -> bool:
    _name, address = parseaddr(value)
    try:
        validate_email(address)
    except ValidationError:
        return False
    return True


def _connector_problems(connector: dict, here: str) -> list[tuple[str, str]]:
    problems = []
    kind = connector.get("type")
    if kind == ActionType.Connector.WEBHOOK:
        url = connector.get("url")
        if isinstance(url, str) and url and not _is_http_url(url):
            problems.append((f"{here}.url", f"must be an http or https URL (got {url!r})"))
        if "secret" in connector and "secret_env" in connector:
            problems.append((here, "give either secret or secret_env, not both"))
        secret = connector.get("secret")
        if isinstance(secret, str) and secret and not crypto.is_webhook_secret(secret):
            problems.append(
                (
                    f"{here}.secret",
                    "must be a Standard Webhooks secret: whsec_ and the base64 of "
                    f"{crypto.MIN_WEBHOOK_SECRET_BYTES} to {crypto.MAX_WEBHOOK_SECRET_BYTES} "
                    "random bytes",
                )
            )
    elif kind == ActionType.Connector.EMAIL:
        sender = connector.get("from")
        if isinstance(sender, str) and sender and not _is_email(sender):
            problems.append((f"{here}.from", f"must be an email address (got {sender!r})"))
    return problems


def _duplicate(seen: dict, value, index: int, what: str, where: str) -> str | None:
    if value in seen:
        return f"duplicate {what} {value!r} (also {where}[{seen[value]}])"
    seen[value] = index
    return None


def _semantic_problems(data: dict) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    irreversible = dict(ActionType.objects.values_list("key", "irreversible"))

    seen_keys: dict = {}
    for index, spec in _entries(data, "action_types"):
        here = f"action_types[{index}]"
        key = spec.get("key")
        if isinstance(key, str):
            duplicate = _duplicate(seen_keys, key, index, "action", "action_types")
            if duplicate:
                problems.append((f"{here}.key", duplicate))
            # A non-boolean flag is reported by the schema; count it as irreversible
            # so that nothing else gets reported about this key.
            irreversible[key] = spec.get("irreversible") is not False
        if spec.get("irreversible") is True and spec.get("default_outcome") == Outcome.ALLOW:
            problems.append(
                (f"{here}.default_outcome", "allow is not permitted on an irreversible action")
            )
        schema = spec.get("params_schema")
        if isinstance(schema, dict):
            try:
                # Patterns are checked below as ECMA-262, not as Python regexes.
                Draft202012Validator.check_schema(schema, format_checker=None)
            except SchemaError as exc:
                problems.append(
                    (
                        _path(f"{here}.params_schema", exc.path),
                        f"invalid JSON Schema: {exc.message}",
                    )
                )
            else:
                problem = schema_problem(schema)
                if problem:
                    problems.append((_path(f"{here}.params_schema", problem[0]), problem[1]))
        summary = spec.get("summary")
        if isinstance(summary, str):
            try:
                list(Formatter().parse(summary))
            except ValueError as exc:
                problems.append((f"{here}.summary", f"invalid template: {exc}"))
        connector = spec.get("connector")
        if isinstance(connector, dict):
            problems += _connector_problems(connector, f"{here}.connector")
        if isinstance(spec.get("anomalies"), list):
            problems += validate_anomaly_rules(
                spec["anomalies"], path=f"{here}.anomalies", known_actions=irreversible
            )

    user_model = get_user_model()
    seen_slugs: dict = {}
    for index, spec in _entries(data, "agents"):
        here = f"agents[{index}]"
        slug = spec.get("slug")
        if isinstance(slug, str):
            duplicate = _duplicate(seen_slugs, slug, index, "agent", "agents")
            if duplicate:
                problems.append((f"{here}.slug", duplicate))
        owner = spec.get("owner")
        if (
            isinstance(owner, str)
            and owner
            and not user_model._default_manager.filter(
                **{user_model.USERNAME_FIELD: owner}
            ).exists()
        ):
            problems.append((f"{here}.owner", f"unknown user {owner!r}"))
        callback_url = spec.get("callback_url")
        if isinstance(callback_url, str) and callback_url and not _is_http_url(callback_url):
            problems.append(
                (f"{here}.callback_url", f"must be an http or https URL (got {callback_url!r})")
            )
        grants = spec.get("grants")
        if isinstance(grants, list):
            seen_actions: dict = {}
            for grant_index, grant in enumerate(grants):
                if not isinstance(grant, dict):
                    continue
                there = f"{here}.grants[{grant_index}]"
                action = grant.get("action")
                if isinstance(action, str) and action:
                    if action not in irreversible:
                        problems.append((f"{there}.action", f"unknown action {action!r}"))
                    duplicate = _duplicate(
                        seen_actions, action, grant_index, "grant for", f"{here}.grants"
                    )
                    if duplicate:
                        problems.append((f"{there}.action", duplicate))
                constraint = grant.get("constraint")
                if isinstance(constraint, str):
                    problems += [
                        (p.path, p.message)
                        for p in validate_constraint(constraint, path=f"{there}.constraint")
                    ]
        if isinstance(spec.get("anomalies"), list):
            problems += validate_anomaly_rules(
                spec["anomalies"], path=f"{here}.anomalies", known_actions=irreversible
            )
        behaviour = spec.get("behaviour")
        if isinstance(behaviour, dict) and "policy" in behaviour:
            problems += [
                (p.path, p.message)
                for p in validate_policy(
                    behaviour["policy"],
                    irreversible_actions=irreversible,
                    path=f"{here}.behaviour.policy",
                )
            ]
    return problems


_PATH_PART = re.compile(r"\[(\d+)\]|\[('[^']*'|\"[^\"]*\")\]|\.?([^.\[]+)")


def _file_order(data: Any, path: str) -> list[int]:
    """Sort key that lists problems in the order their places appear in the file."""
    order = []
    node = data
    for index, quoted, name in _PATH_PART.findall(path):
        part = int(index) if index else (quoted[1:-1] if quoted else name)
        if isinstance(node, list) and isinstance(part, int) and part < len(node):
            order.append(part)
            node = node[part]
        elif isinstance(node, dict) and part in node:
            order.append(list(node).index(part))
            node = node[part]
        else:
            order.append(1_000_000)
            node = None
    return order


def validate_governance(data: Any) -> list[str]:
    """Every problem with parsed governance data, as ``path: message`` lines.

    Reads the database: owners must exist, and grants and policies may refer to
    action types that are already stored.
    """
    if not isinstance(data, dict):
        return ["(top level): must be a mapping with action_types and agents"]
    problems = _json_problems(data, [])
    if not problems:
        problems = _schema_problems(data) + _semantic_problems(data)
    lines: list[str] = []
    for path, message in sorted(problems, key=lambda problem: _file_order(data, problem[0])):
        line = f"{_where(path)}: {message}"
        if line not in lines:
            lines.append(line)
    return lines
