"""Values as people read them: money and numbers written for the reader's locale.

Only what is shown to people goes through here. The stored summary, the API's
`summary`, the audit trail's records and the exports keep the values exactly as the
agent sent them.
"""

import math
import re
from decimal import Decimal, InvalidOperation
from string import Formatter

from babel import Locale, UnknownLocaleError
from babel.numbers import format_currency, format_decimal, is_currency
from django.utils import translation

from agents.summary import _flatten, render_summary
from aispm_site.logging import current_request

# Number fields read as an amount of money when the params also name a currency.
MONEY_FIELDS = frozenset({"amount", "total", "price", "sum", "value", "fee", "cost"})
CURRENCY_FIELDS = ("currency", "currency_code")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def reader_language() -> str:
    """The language whose conventions numbers are written in: the one the reader's
    browser asked for (aispm_site.middleware.ReaderLocaleMiddleware), else Django's
    active language."""
    request = current_request.get()
    return getattr(request, "reader_language", None) or translation.get_language() or "en-us"


def reader_locale(language: str | None = None) -> Locale:
    """The locale of `language` (by default the reader's), English when babel does not
    know it."""
    try:
        return Locale.parse(translation.to_locale(language or reader_language()))
    except (UnknownLocaleError, ValueError, TypeError):
        return Locale.parse("en_US")


def is_number(value) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value) and abs(value) < 10**15


def currency_of(params) -> str | None:
    if not isinstance(params, dict):
        return None
    for name in CURRENCY_FIELDS:
        code = params.get(name)
        if isinstance(code, str) and len(code) == 3 and code.isalpha():
            code = code.upper()
            if is_currency(code):
                return code
    return None


def readable_number(value, *, currency: str | None = None, language: str | None = None) -> str:
    """12500.0 as "12,500" (or "€12,500.00" with a currency) in the reader's locale."""
    locale = reader_locale(language)
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return str(value)
    if currency:
        return format_currency(number, currency, locale=locale)
    return format_decimal(number, locale=locale, decimal_quantization=False)


def money_currency(name, value, params) -> str | None:
    """The currency of a money field (a number beside a currency), or None."""
    currency = currency_of(params)
    if currency and str(name).lower() in MONEY_FIELDS and is_number(value):
        return currency
    return None


def readable_summary(decision, *, language: str | None = None) -> str:
    """The decision's one-line summary with its money written for the reader.

    Rebuilt from the action's summary template and the params shown (the edited ones
    once a reviewer edited them), the same way as agents.summary.render_summary; a
    money field followed by its currency field becomes one "€12,500.00". The stored
    summary is shown as it is when there is no template, or when the template no
    longer yields it (the action type's template changed since): the words people
    read are then the ones that were recorded. `language` overrides the reader's, for
    text that goes to someone else (a notification).
    """
    stored = decision.summary or decision.action_type.key
    template_text = getattr(decision.action_type, "summary_template", "") or ""
    params = decision.approved_params if decision.approved_params is not None else decision.params
    if not template_text or not isinstance(params, dict) or not isinstance(decision.params, dict):
        return stored
    if render_summary(template_text, decision.params) != decision.summary:
        return stored
    try:
        parsed = list(Formatter().parse(template_text))
    except ValueError:
        return stored
    out, money_shown = [], False
    for literal, field, _spec, _conv in parsed:
        if field in CURRENCY_FIELDS and money_shown and not literal.strip():
            money_shown = False
            continue
        out.append(literal)
        money_shown = False
        if field is None:
            continue
        if not (_NAME.match(field) and field in params):
            out.append("{" + field + "}")
            continue
        value = params[field]
        currency = money_currency(field, value, params)
        if currency:
            out.append(readable_number(value, currency=currency, language=language))
            money_shown = True
        else:
            # Other values as the agent sent them: an exact count or id stays exact.
            out.append(_flatten(value))
    return "".join(out)
