"""Input that must never reach the database or a recursive walker: one set of rules for
the edges (the API parser, every form, every query filter, governance files).

Refused everywhere: NUL (PostgreSQL cannot store it in text or jsonb) and lone UTF-16
surrogates (not encodable as UTF-8). In structured values also NaN and Infinity (not
JSON), integers past 64 bits, and nesting past a bound. Each check walks iteratively,
so no input can raise a RecursionError.
"""

import json
import math
import re

import yaml
from django import forms
from django.core.validators import MaxValueValidator, MinValueValidator

MAX_DEPTH = 32
INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1

_FORBIDDEN = re.compile("[\x00\ud800-\udfff]")


class Refused(ValueError):
    """The value is hostile; the message says why, without echoing it."""


def text_problem(value: str) -> str | None:
    """Why this text is refused, or None. `value` may be any string."""
    match = _FORBIDDEN.search(value)
    if match is None:
        return None
    if match.group() == "\x00":
        return "contains a NUL character"
    return "contains an invalid character (a lone surrogate)"


def check_structure(value, *, name: str = "value", max_depth: int = MAX_DEPTH) -> None:
    """Raise Refused if a decoded JSON/YAML value holds anything hostile."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            raise Refused(f"{name} is nested more than {max_depth} levels.")
        if isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str):
                    problem = text_problem(key)
                    if problem:
                        raise Refused(f"{name} has a key that {problem}.")
                else:
                    stack.append((key, depth + 1))
                stack.append((child, depth + 1))
        elif isinstance(item, list | tuple | set):
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            problem = text_problem(item)
            if problem:
                raise Refused(f"{name} {problem}.")
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise Refused(f"{name} contains a non-finite number (NaN or Infinity).")
        elif isinstance(item, int) and not -(2**63) <= item <= INT64_MAX:
            raise Refused(f"{name} contains an integer beyond 64 bits.")


def _no_constant(token: str):
    raise Refused(f"{token} is not a JSON number.")


def json_loads(text: str, *, name: str = "JSON", max_depth: int = MAX_DEPTH):
    """json.loads for untrusted text: strict JSON only, bounded, hostile values refused.

    Raises Refused (a ValueError) for anything it will not return.
    """
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise Refused(f"{name} is nested more than {max_depth} levels.") from None
    except Refused:
        raise
    except ValueError as exc:
        raise Refused(f"Not valid JSON: {exc}") from None
    check_structure(value, name=name, max_depth=max_depth)
    return value


def yaml_load(text: str, *, loader=None, name: str = "YAML", max_depth: int = MAX_DEPTH):
    """yaml.safe_load (or the given SafeLoader subclass) for untrusted text.

    YAML errors propagate as yaml.YAMLError; hostile values raise Refused.
    """
    problem = text_problem(text)
    if problem:
        raise Refused(f"{name} {problem}.")
    try:
        value = yaml.load(text, Loader=loader or yaml.SafeLoader)  # noqa: S506 - safe loaders only
    except RecursionError:
        raise Refused(f"{name} is nested more than {max_depth} levels.") from None
    check_structure(value, name=name, max_depth=max_depth)
    return value


def parse_int(text, *, minimum: int = -INT64_MAX, maximum: int = INT64_MAX) -> int | None:
    """An int from ASCII digits within [minimum, maximum], else None.

    int() alone accepts Unicode digits ('²' passes isdigit but not int(), '٣' passes
    both), whitespace and underscores, and numbers of any size.
    """
    if not isinstance(text, str | int) or isinstance(text, bool):
        return None
    text = str(text)
    if not re.fullmatch(r"-?[0-9]{1,19}", text, flags=re.ASCII):
        return None
    value = int(text)
    return value if minimum <= value <= maximum else None


def query_text(query, name: str, *, max_length: int = 100, default: str = "") -> str:
    """A text filter from a query string, cut to max_length; a hostile value is ignored."""
    value = query.get(name, default)
    if not isinstance(value, str) or text_problem(value):
        return default
    return value[:max_length]


class HostileInputMixin:
    """Refuse NUL and lone surrogates in any submitted field with a field error, before
    the field's own cleaning can hand them to the database; and bound integer fields
    to what a 64-bit database integer holds (a form over a smaller column sets its own
    max_value)."""

    hostile_int_max = INT64_MAX

    def _clean_fields(self):
        refused = set()
        for name, bf in self._bound_items():
            field = bf.field
            if isinstance(field, forms.IntegerField) and not getattr(field, "_bounded", False):
                field._bounded = True
                field.validators += [
                    MinValueValidator(-self.hostile_int_max - 1),
                    MaxValueValidator(self.hostile_int_max),
                ]
            if field.disabled:
                continue
            values = bf.data if isinstance(bf.data, list | tuple) else [bf.data]
            for value in values:
                problem = isinstance(value, str) and text_problem(value)
                if problem:
                    self.add_error(name, f"This value {problem}.")
                    refused.add(name)
                    break
        if not refused:
            return super()._clean_fields()
        # Clean the other fields as usual; a refused one keeps only its error.
        fields = self.fields
        self.fields = {name: field for name, field in fields.items() if name not in refused}
        try:
            return super()._clean_fields()
        finally:
            self.fields = fields


class Form(HostileInputMixin, forms.Form):
    """The project's base form: every form in the project derives from it."""


class IdConverter:
    """A database id in a URL: ASCII digits that fit a 64-bit column. Django's `int`
    converter matches any number of digits, and the lookup then overflows."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value) -> str:
        return str(value)
