"""Structured logs: one JSON object per line, with who and what each line is about.

RequestContextMiddleware binds the current request (and its id) in context
variables. ContextFilter reads them when a record is emitted, so every line
logged while a request runs names the request id, the signed-in user or the
calling agent, and the decision when one is known. RedactSecrets masks agent
keys and webhook secrets that reach a log record by mistake.
"""

import json
import logging
import re
from contextvars import ContextVar
from datetime import UTC, datetime

from django.utils.functional import SimpleLazyObject, empty

# agents.keys format (aispm_<32 base62>_<6 base62>) and Standard Webhooks secrets.
SECRET_PATTERN = re.compile(r"aispm_[0-9A-Za-z]{32}_[0-9A-Za-z]{6}|whsec_[A-Za-z0-9+/=_-]+")
REDACTED = "[REDACTED]"

current_request: ContextVar = ContextVar("aispm_request", default=None)
current_request_id: ContextVar[str | None] = ContextVar("aispm_request_id", default=None)
current_decision_id: ContextVar[str | None] = ContextVar("aispm_decision_id", default=None)

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_CONTEXT_FIELDS = {"message", "asctime", "request_id", "user", "agent", "decision_id"}
_RECORD_ATTRIBUTES = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | _CONTEXT_FIELDS
_JSON_SCALARS = (str, int, float, bool, type(None))


def redact(text: str) -> str:
    return SECRET_PATTERN.sub(REDACTED, text)


def bind_decision_id(decision_id) -> None:
    """Name the decision the current request or task is about in later log lines."""
    current_decision_id.set(str(decision_id) if decision_id is not None else None)


def _loaded(value):
    # Django's request.user is lazy: read it only if the request already did,
    # so that logging never runs a query.
    if isinstance(value, SimpleLazyObject):
        return None if value._wrapped is empty else value._wrapped
    return value


def request_identity(request) -> dict:
    """The user's username or the agent's slug, whichever authenticated the request."""
    if request is None:
        return {}
    attributes = request.__dict__
    # DRF copies the authenticated agent and its key onto the Django request.
    agent = getattr(attributes.get("auth"), "agent", None)
    if agent is not None:
        return {"agent": agent.slug}
    user = _loaded(attributes.get("user"))
    if user is not None and getattr(user, "is_authenticated", False):
        return {"user": user.get_username()}
    return {}


def _request_decision_id(request) -> str | None:
    match = getattr(request, "resolver_match", None)
    if match is None:
        return None
    decision_id = match.kwargs.get("decision_id")
    return str(decision_id) if decision_id is not None else None


class ContextFilter(logging.Filter):
    """Add request_id, user or agent, and decision_id to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = current_request.get()
        record.request_id = current_request_id.get()
        identity = request_identity(request)
        record.user = identity.get("user")
        record.agent = identity.get("agent")
        record.decision_id = current_decision_id.get() or _request_decision_id(request)
        return True


class RedactSecrets(logging.Filter):
    """Mask agent keys and webhook secrets in a record's message and arguments.

    Nothing should log a secret in the first place; this is the second line of
    defence. The message is rendered once and replaced only when it held one.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is reported by the handler itself
            return True
        if SECRET_PATTERN.search(message):
            record.msg, record.args = redact(message), None
        return True


class JSONFormatter(logging.Formatter):
    """One JSON object per line; json.dumps escapes CR and LF, so text cannot forge a line."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        for name in ("user", "agent", "decision_id"):
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        for name, value in record.__dict__.items():
            # Only plain values from `extra=`: objects such as Django's `request`
            # render with their query string, which may carry a secret.
            if name not in _RECORD_ATTRIBUTES and isinstance(value, _JSON_SCALARS):
                entry.setdefault(name, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        # ASCII-only output: besides CR and LF, json.dumps also escapes U+2028,
        # NEL and friends, which some readers treat as line breaks.
        return redact(json.dumps(entry, default=str))
