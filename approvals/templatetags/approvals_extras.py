import json

from django import template
from django.utils.html import conditional_escape, format_html
from django.utils.safestring import mark_safe

from approvals.invisible import INVISIBLE, char_name, contains_invisible, marker

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


@register.filter(is_safe=True)
def reveal(value):
    """Escaped text in which every invisible or direction-changing character is
    replaced by a marked, visible `⟨U+202E⟩` (see approvals.invisible)."""
    if value is None:
        return ""
    text = str(value)
    parts, last = [], 0
    for match in INVISIBLE.finditer(text):
        char = match.group()
        parts.append(conditional_escape(text[last : match.start()]))
        parts.append(
            format_html(
                '<mark class="invisible-char" title="{}">{}</mark>', char_name(char), marker(char)
            )
        )
        last = match.end()
    parts.append(conditional_escape(text[last:]))
    return mark_safe("".join(parts))  # every piece above is escaped or built by format_html


@register.filter
def reveal_text(value) -> str:
    """The same markers as plain text, for attributes; the template escapes it."""
    if value is None:
        return ""
    return INVISIBLE.sub(lambda match: marker(match.group()), str(value))


@register.filter
def has_invisible(value) -> bool:
    return contains_invisible(value)


@register.filter
def decision_has_invisible(decision) -> bool:
    """Whether anything the agent wrote on this decision, or what will run, hides characters."""
    return contains_invisible(
        [
            decision.summary,
            decision.params,
            decision.approved_params,
            decision.evidence,
            decision.reasoning,
        ]
    )


@register.filter
def percent(value) -> str:
    try:
        return f"{float(value) * 100:.0f}%"
    except (TypeError, ValueError):
        return ""
