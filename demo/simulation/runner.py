"""Sending requests to the agent API and counting what came back."""

import json
import math
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from .common import APPROVED, NO_RESPONSE, OUT_OF_SCOPE, RELEASE_STATUSES, SimRequest


@dataclass
class Outcome:
    request: SimRequest
    http_status: int | None = None  # None: the request never got an answer
    error_code: str = ""
    decision_status: str = ""
    retry_after: float = 0.0
    latency: float = 0.0
    detail: str = ""

    @property
    def result(self) -> str:
        """What the request turned into, in the terms of SimRequest.expect."""
        if self.http_status in (200, 201):
            return self.decision_status
        if self.http_status == 403 and self.error_code == "out_of_scope":
            return OUT_OF_SCOPE
        return self.error_code or (f"http {self.http_status}" if self.http_status else "error")

    @property
    def as_expected(self) -> bool:
        result, expect = self.result, self.request.expect
        # An auto-approved decision may already be on its way out when the answer is built.
        return result == expect or (expect == APPROVED and result in RELEASE_STATUSES)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # a redirected POST would lose its body; report the 3xx instead


# Agents talk to aispm directly, never through an HTTP proxy from the environment.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)


def http_call(
    method: str, url: str, *, key: str | None = None, body: dict | None = None, timeout=10.0
) -> tuple[int, dict, dict]:
    """(status, JSON body or {}, headers). Raises OSError for network failures."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Accept": "application/json", "User-Agent": "aispm-simulator/1"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with OPENER.open(req, timeout=timeout) as response:
            status, raw, response_headers = response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        status, raw, response_headers = exc.code, exc.read(), exc.headers
    try:
        payload = json.loads(raw) if raw else {}
    except ValueError:
        payload = {}
    return status, payload if isinstance(payload, dict) else {}, dict(response_headers or {})


def submit(base_url: str, key: str, request: SimRequest, timeout: float = 10.0) -> Outcome:
    """POST one request to the agent API; never raises."""
    outcome = Outcome(request=request)
    started = time.monotonic()
    try:
        status, payload, headers = http_call(
            "POST", f"{base_url}/api/v1/decisions/", key=key, body=request.body(), timeout=timeout
        )
    except (OSError, ValueError) as exc:  # URLError, timeouts, resets, bad status lines
        outcome.latency = time.monotonic() - started
        outcome.detail = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        return outcome
    outcome.latency = time.monotonic() - started
    outcome.http_status = status
    if status in (200, 201):
        outcome.decision_status = str(payload.get("status", ""))
    else:
        error = payload.get("error") if isinstance(payload.get("error"), dict) else {}
        outcome.error_code = str(error.get("code", ""))
        outcome.detail = json.dumps(error.get("details") or error.get("message") or "")[:500]
    if status == 429:
        retry_after = {k.lower(): v for k, v in headers.items()}.get("retry-after", "")
        try:
            outcome.retry_after = max(float(retry_after), 1.0)
        except ValueError:
            outcome.retry_after = 60.0
    return outcome


@dataclass
class Stats:
    """Counts for the progress lines and the summary, kept per agent."""

    agents: list[str]
    sent: dict[str, int] = field(default_factory=dict)
    by_http: dict[str, dict[str, int]] = field(default_factory=dict)
    by_decision: dict[str, dict[str, int]] = field(default_factory=dict)
    out_of_scope: dict[str, int] = field(default_factory=dict)
    rate_limited: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    unexpected: list[Outcome] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    @staticmethod
    def _bump(counter: dict, key: str, by: int = 1) -> None:
        counter[key] = counter.get(key, 0) + by

    def record_sent(self, agent: str) -> None:
        self._bump(self.sent, agent)

    def record(self, outcome: Outcome) -> None:
        agent = outcome.request.agent
        if outcome.http_status is None:
            self._bump(self.errors, agent)
            self._bump(self.by_http.setdefault(NO_RESPONSE, {}), agent)
            return
        self.latencies.append(outcome.latency)
        self._bump(self.by_http.setdefault(str(outcome.http_status), {}), agent)
        if outcome.decision_status:
            self._bump(self.by_decision.setdefault(outcome.decision_status, {}), agent)
        if outcome.result == OUT_OF_SCOPE:
            self._bump(self.out_of_scope, agent)
        if outcome.http_status == 429:
            self._bump(self.rate_limited, agent)
        elif outcome.http_status >= 500:
            self._bump(self.errors, agent)
        if outcome.http_status != 429 and not outcome.as_expected:
            self.unexpected.append(outcome)

    def total(self, counter: dict) -> int:
        return sum(counter.values())

    def percentile(self, share: float) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        rank = math.ceil(share * len(ordered))  # nearest rank
        return ordered[min(max(rank, 1), len(ordered)) - 1]
