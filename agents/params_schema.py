"""Params schemas compiled with jsonschema-rs, whose regular expressions follow ECMA-262
as JSON Schema requires (with Python's `re`, `^...$` also matches before a trailing
newline). One place decides the regex engine, so that a schema accepted when a config
is applied is one that validates the same way at submission."""

from collections.abc import Callable, Iterator
from functools import lru_cache

import jsonschema_rs
import regress

# Patterns with lookaround or backreferences backtrack; past this many steps the value
# does not match, so an expensive pattern fails closed instead of stalling a worker.
BACKTRACK_LIMIT = 100_000


def compile_params_schema(schema: dict, *, formats: dict[str, Callable] | None = None):
    """Raises jsonschema_rs.ValidationError when the schema, or a pattern in it, is invalid."""
    return jsonschema_rs.Draft202012Validator(
        schema,
        validate_formats=True,
        formats=formats or {},
        pattern_options=jsonschema_rs.FancyRegexOptions(backtrack_limit=BACKTRACK_LIMIT),
        offline=True,  # a remote $ref is refused, never fetched
    )


# Keywords whose values are data, not subschemas: a "pattern" inside them is no regex.
_DATA_KEYWORDS = {"const", "enum", "default", "examples"}


def _patterns(schema, path: list) -> Iterator[tuple[list, str]]:
    if isinstance(schema, list):
        for index, item in enumerate(schema):
            yield from _patterns(item, [*path, index])
    if not isinstance(schema, dict):
        return
    for key, value in schema.items():
        if key == "pattern" and isinstance(value, str):
            yield [*path, key], value
        elif key == "patternProperties" and isinstance(value, dict):
            for pattern in value:
                yield [*path, key], pattern
        if key not in _DATA_KEYWORDS:
            yield from _patterns(value, [*path, key])


def ecma_regex_problem(pattern: str) -> str:
    """Why `pattern` is not an ECMA-262 regular expression (with the "u" flag, as JSON
    Schema recommends); empty when it is one."""
    try:
        regress.Regex(pattern, "u")
    except regress.RegressError as exc:
        return str(exc) or "invalid"
    return ""


@lru_cache(maxsize=64)
def _ecma_regex(pattern: str) -> regress.Regex:
    return regress.Regex(pattern, "u")


def ecma_search(pattern: str, text: str) -> bool:
    """Whether `pattern` matches somewhere in `text`, as JSON Schema's `pattern` keyword
    matches: ECMA-262 with the "u" flag, where `$` is the end of the text."""
    return _ecma_regex(pattern).find(text) is not None


def schema_problem(schema: dict) -> tuple[list, str] | None:
    """(path inside the schema, message) for a schema with a pattern that is not ECMA-262,
    or one jsonschema-rs cannot compile."""
    for path, pattern in _patterns(schema, []):
        problem = ecma_regex_problem(pattern)
        if problem:
            return path, f"{pattern!r} is not a valid ECMA-262 regular expression: {problem}"
    try:
        compile_params_schema(schema)
    except jsonschema_rs.ValidationError as exc:
        kind = exc.kind
        if isinstance(kind, jsonschema_rs.ValidationErrorKind.Format) and kind.format == "regex":
            return (
                list(exc.instance_path),
                f"{exc.instance!r} is not a valid ECMA-262 regular expression "
                "(JSON Schema patterns follow ECMA-262, not Python's re)",
            )
        return list(exc.instance_path), f"invalid JSON Schema: {exc.message}"
    except (ValueError, TypeError) as exc:
        return [], f"invalid JSON Schema: {exc}"
    return None
