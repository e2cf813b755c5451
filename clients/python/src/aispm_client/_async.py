from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from . import _core
from ._errors import Conflict, ConnectionFailed, RateLimited, WaitTimeout
from ._models import Behaviour, Decision, FeedbackItem


class AsyncClient:
    """The asyncio twin of Client: the same methods, awaited. Use `async with`, or
    await aclose().

    AsyncClient("https://aispm.example.com", "aispm_...") talks to /api/v1/ under that URL.
    Transport failures, timeouts and 502/503/504 are retried `retries` times with
    backoff (honouring Retry-After); a submission keeps its idempotency key across
    those retries, so it is never created twice.
    """

    def __init__(
        self,
        base_url: str,
        key: str,
        *,
        timeout: float = _core.DEFAULT_TIMEOUT,
        retries: int = _core.DEFAULT_RETRIES,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=_core.api_root(base_url),
            headers=_core.default_headers(key),
            timeout=timeout,
            transport=transport,
        )
        self._retries = retries
        self._behaviour: Behaviour | None = None
        self._sleep = asyncio.sleep
        self._clock = time.monotonic

    @classmethod
    def from_env(cls, **kwargs: Any) -> AsyncClient:
        """A client for AISPM_URL with the key in AISPM_KEY."""
        url, key = _core.env_settings()
        return cls(url, key, **kwargs)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = await self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if attempt >= self._retries:
                    raise ConnectionFailed(f"{method} {path}: {exc!r}") from exc
                delay = _core.backoff_delay(attempt)
            else:
                if response.status_code not in _core.RETRY_STATUSES or attempt >= self._retries:
                    return response
                delay = _core.retry_delay(response, attempt)
            attempt += 1
            await self._sleep(delay)

    async def submit(
        self,
        action: str,
        params: dict[str, Any],
        reasoning: str,
        evidence: dict[str, Any] | None = None,
        confidence: float | None = None,
        idempotency_key: str | None = None,
        *,
        external_ref: str | None = None,
    ) -> Decision:
        """Propose an action. Returns the decision, whatever the policy said: check
        `status` ("approved", "pending", "denied", ...) or pass it to wait()."""
        body = _core.submit_body(
            action=action,
            params=params,
            reasoning=reasoning,
            evidence=evidence,
            confidence=confidence,
            idempotency_key=idempotency_key or _core.new_idempotency_key(),
            external_ref=external_ref,
        )
        return Decision.from_json(
            _core.json_of(await self._request("POST", "decisions/", json=body))
        )

    async def get(self, decision_id: str) -> Decision:
        response = await self._request("GET", _core.decision_path(decision_id))
        return Decision.from_json(_core.json_of(response))

    async def cancel(self, decision_id: str) -> Decision:
        """Cancel a pending decision. Cancelling one already cancelled returns it;
        any other state raises Conflict."""
        response = await self._request("POST", _core.decision_path(decision_id) + "cancel/")
        try:
            return Decision.from_json(_core.json_of(response))
        except Conflict:
            decision = await self.get(decision_id)
            if decision.status == "cancelled":
                return decision
            raise

    async def wait(
        self,
        decision: Decision | str,
        timeout: float | None = None,
        *,
        policy: _core.WaitPolicy | None = None,
    ) -> Decision:
        """Poll until the decision settles and return it if it was approved.

        Raises Denied, Rejected (with the reviewer's `reason`), Expired, Cancelled,
        Blocked or ReleaseFailed when it ends otherwise, and WaitTimeout when it is
        still undecided after `timeout` seconds (the policy's, 300 by default).
        """
        policy = policy or _core.WaitPolicy()
        timeout = policy.timeout if timeout is None else timeout
        deadline = self._clock() + timeout
        delays = policy.delays()
        current = decision if isinstance(decision, Decision) else await self.get(decision)
        while not current.settled(until_released=policy.until_released):
            delay = next(delays)
            remaining = deadline - self._clock()
            if remaining <= 0:
                return await self._timed_out(current, timeout, policy)
            await self._sleep(min(delay, remaining))
            try:
                current = await self.get(current.id)
            except RateLimited as exc:
                await self._sleep(min(exc.retry_after, max(deadline - self._clock(), 0)))
        return _core.outcome(current)

    async def _timed_out(
        self, decision: Decision, timeout: float, policy: _core.WaitPolicy
    ) -> Decision:
        if policy.cancel_on_timeout and decision.pending:
            try:
                decision = await self.cancel(decision.id)
            except Conflict:
                # Decided meanwhile: go with what it became.
                decision = await self.get(decision.id)
                if decision.settled(until_released=policy.until_released):
                    return _core.outcome(decision)
        raise WaitTimeout(decision, timeout)

    async def behaviour(self) -> Behaviour:
        """The agent's active behaviour version, revalidated with its ETag: an unchanged
        version costs a 304 and comes from this client's cache."""
        cached = self._behaviour
        headers = {"If-None-Match": cached.etag} if cached and cached.etag else {}
        response = await self._request("GET", "behaviour/", headers=headers)
        if response.status_code == 304 and cached is not None:
            return cached
        behaviour = Behaviour.from_json(_core.json_of(response), response.headers.get("ETag"))
        self._behaviour = behaviour if behaviour.etag else None
        return behaviour

    async def feedback(self, after: str | None = None) -> AsyncIterator[FeedbackItem]:
        """Reviewer verdicts on this agent's decisions, oldest first, page after page
        until caught up. Store the last item's `cursor` and pass it as `after` next time."""
        cursor = after
        while True:
            params = {"after": cursor} if cursor else None
            page = _core.json_of(await self._request("GET", "feedback/", params=params))
            results = page.get("results") or []
            if not results:
                return
            for item in results:
                yield FeedbackItem.from_json(item)
            cursor = page.get("next") or results[-1]["cursor"]
