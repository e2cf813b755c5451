import json
import math
import re

from django import template
from django.utils.html import conditional_escape, format_html, format_html_join

from approvals.invisible import INVISIBLE, char_name, contains_invisible, marker
from approvals.readable import is_number, money_currency, readable_number, readable_summary

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
    # Each piece is already escaped or built by format_html; joining keeps it safe.
    return format_html_join("", "{}", ((part,) for part in parts))


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
    """A ratio between 0 and 1 as a whole percentage, the one way every page shows one."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return ""
    if not math.isfinite(number):
        return ""
    return f"{number * 100:.0f}%"


# ---- Values as people read them -------------------------------------------------------

# Words shown in capitals when a field has no schema title: "iban" is IBAN, not "Iban".
ACRONYMS = frozenset(
    [
        "api",
        "bcc",
        "bic",
        "cc",
        "cvv",
        "eu",
        "id",
        "iban",
        "ip",
        "ips",
        "isbn",
        "mfa",
        "pdf",
        "po",
        "sku",
        "sms",
        "ssn",
        "swift",
        "uk",
        "url",
        "us",
        "utm",
        "uuid",
        "vat",
    ]
)
_WORD = re.compile(r"[A-Za-z0-9]+")
# Only plain names are reworded; anything else (an agent's hostile key with hidden or
# direction-changing characters) is shown as it is, for `reveal` to mark.
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_ -]{1,100}$")


@register.filter
def readable_params(value) -> list[tuple[str, str]]:
    """Like params_items, with money (a number beside a currency) written for the
    reader's locale; other values stay as the agent sent them."""
    if not isinstance(value, dict):
        return params_items(value)
    items = []
    for key, item in value.items():
        currency = money_currency(key, item, value)
        text = readable_number(item, currency=currency) if currency else _display(item)
        items.append((str(key), text))
    return items


@register.filter
def field_label(name, schema=None) -> str:
    """A field's label: the schema's `title`, or its name in words with acronyms in capitals."""
    if isinstance(schema, dict):
        properties = schema.get("properties")
        prop = properties.get(str(name)) if isinstance(properties, dict) else None
        title = prop.get("title") if isinstance(prop, dict) else None
        if isinstance(title, str) and title.strip():
            return title.strip()
    if not _PLAIN_NAME.match(str(name)):
        return str(name)
    words = _WORD.findall(re.sub(r"([a-z])([A-Z])", r"\1 \2", str(name)))
    if not words:
        return str(name)
    shown = [w.upper() if w.lower() in ACRONYMS else w.lower() for w in words]
    if shown[0].islower():
        shown[0] = shown[0].capitalize()
    return " ".join(shown)


register.filter("readable_summary", readable_summary)


@register.filter
def number(value) -> str:
    """A count or amount written for the reader's locale: 10000 as "10,000"."""
    if not is_number(value):
        return "" if value is None else str(value)
    return readable_number(value)


@register.filter
def route_part_label(part) -> str:
    """A part of a policy route ("ttl") as the dry run and rollback pages name it."""
    from approvals.selectors import ROUTE_PART_LABELS

    return ROUTE_PART_LABELS.get(str(part), str(part))
