import json

from django import template

register = template.Library()


def _display(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, (str, int, float)) for item in value):
        return ", ".join(str(item) for item in value)
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True)


@register.filter
def params_items(value) -> list[tuple[str, str]]:
    """A JSON object as (key, readable text) pairs; the template escapes both."""
    if not isinstance(value, dict):
        return [("value", _display(value))] if value not in (None, "") else []
    return [(str(key), _display(item)) for key, item in value.items()]


@register.filter
def percent(value) -> str:
    try:
        return f"{float(value) * 100:.0f}%"
    except (TypeError, ValueError):
        return ""
