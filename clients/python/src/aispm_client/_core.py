"""What the sync and async clients share: requests, responses, errors and backoff."""

from __future__ import annotations

import email.utils
import os
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from ._errors import (
    ERRORS_BY_CODE,
    ERRORS_BY_STATUS,
    OUTCOMES,
    AispmError,
    ApiError,
    RateLimited,
    ServerError,
)
from ._models import Decision

VERSION = "0.1.0"
DEFAULT_TIMEOUT = 10.0
DEFAULT_RETRIES = 3
# Transient answers that are safe to retry: every request this client retries is
# either a read, or a submission whose idempotency key is fixed for the call.
RETRY_STATUSES = frozenset({502, 503, 504})
MAX_RETRY_DELAY = 30.0


@dataclass(frozen=True)
class WaitPolicy:
    """How long and how often to poll a decision.

    timeout: seconds to wait in all; interval: the first delay between polls,
    multiplied by `backoff` each time up to `max_interval`. A `Retry-After` from the
    server replaces the next delay. until_released: keep waiting after approval until
    the release finished (for connector `none`, the moment the agent may act).
    cancel_on_timeout: cancel a decision that is still pending when the wait ends, so a
    late approval does not release an action nobody performs.
    """

    timeout: float = 300.0
    interval: float = 0.5
    max_interval: float = 10.0
    backoff: float = 1.5
    until_released: bool = True
    cancel_on_timeout: bool = False

    def delays(self) -> Iterator[float]:
        delay = self.interval
        while True:
            yield delay
            delay = min(delay * self.backoff, self.max_interval)


def api_root(base_url: str) -> str:
    root = base_url.rstrip("/")
    if not root.endswith("/api/v1"):
        root += "/api/v1"
    return root + "/"


def default_headers(key: str) -> dict[str, str]:
    if not key:
        raise AispmError("An agent key is required (aispm_...).")
    return {
        "Authorization": f"Bearer {key}",
        "Accept": "application/json",
        "User-Agent": f"aispm-client/{VERSION}",
    }


def env_settings() -> tuple[str, str]:
    url, key = os.environ.get("AISPM_URL", ""), os.environ.get("AISPM_KEY", "")
    if not url or not key:
        raise AispmError("Set AISPM_URL and AISPM_KEY, or pass a client.")
    return url, key


def new_idempotency_key() -> str:
    return f"aispm-client-{uuid.uuid4()}"


def submit_body(
    *,
    action: str,
    params: dict[str, Any],
    reasoning: str,
    evidence: dict[str, Any] | None,
    confidence: float | None,
    idempotency_key: str,
    external_ref: str | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "action": action,
        "params": params,
        "reasoning": reasoning,
        "idempotency_key": idempotency_key,
    }
    if evidence is not None:
        body["evidence"] = evidence
    if confidence is not None:
        body["confidence"] = confidence
    if external_ref:
        body["external_ref"] = external_ref
    return body


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def backoff_delay(attempt: int) -> float:
    return min(0.25 * 2**attempt, MAX_RETRY_DELAY)


def retry_delay(response: httpx.Response, attempt: int) -> float:
    return min(retry_after(response) or backoff_delay(attempt), MAX_RETRY_DELAY)


def error_from(response: httpx.Response) -> ApiError:
    code = message = None
    details = None
    try:
        error = response.json()["error"]
        code, message, details = error.get("code"), error.get("message"), error.get("details")
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    cls = ERRORS_BY_CODE.get(code or "") or ERRORS_BY_STATUS.get(response.status_code)
    if cls is None:
        cls = ServerError if response.status_code >= 500 else ApiError
    kwargs: dict[str, Any] = {
        "status_code": response.status_code,
        "code": code,
        "details": details if isinstance(details, dict) else None,
        "headers": dict(response.headers),
    }
    message = message or response.reason_phrase or f"HTTP {response.status_code}"
    if cls is RateLimited:
        return RateLimited(message, retry_after=retry_after(response) or 1.0, **kwargs)
    return cls(message, **kwargs)


def json_of(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise error_from(response)
    try:
        return response.json()
    except ValueError as exc:
        raise ServerError(
            "The server sent a response that is not JSON.",
            status_code=response.status_code,
        ) from exc


def outcome(decision: Decision) -> Decision:
    """The decision if it may go ahead; else the NotApproved error for how it ended."""
    error = OUTCOMES.get(decision.status)
    if error is not None:
        raise error(decision)
    return decision


def decision_path(decision_id: str) -> str:
    # An id is a UUID; quoting keeps anything else from escaping the path.
    return f"decisions/{urllib.parse.quote(str(decision_id), safe='')}/"
