"""The canonical one-line view of an action, built from its template and actual params.

Only plain top-level names (`{to}`) are substituted: no attribute or index access,
so a template can never reach into Python objects. Values are flattened onto one
line so that agent-supplied CR/LF cannot fake a second line in a reviewer's view.
"""

import json
import re
from string import Formatter

MAX_VALUE_CHARS = 200
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029\x0b\x0c\x85]+")


def _flatten(value) -> str:
    if isinstance(value, list):
        text = ", ".join(_flatten(item) for item in value)
    elif isinstance(value, dict):
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    elif value is None:
        text = "—"
    else:
        text = str(value)
    text = _LINE_BREAKS.sub(" ", text)
    if len(text) > MAX_VALUE_CHARS:
        text = text[: MAX_VALUE_CHARS - 1] + "…"
    return text


def render_summary(template: str, params: dict) -> str:
    if not template:
        return ""
    out = []
    try:
        parsed = list(Formatter().parse(template))
    except ValueError:
        return template
    for literal, field, _spec, _conv in parsed:
        out.append(literal)
        if field is None:
            continue
        if _NAME.match(field) and field in params:
            out.append(_flatten(params[field]))
        else:
            out.append("{" + field + "}")
    return "".join(out)
