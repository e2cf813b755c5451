"""An in-memory stand-in for the agent API, served through httpx.MockTransport."""

import asyncio
import json
import threading
from collections.abc import Callable

import httpx

DECISION_ID = "6f1c1c9e-7d3f-4a43-9a4e-2b2b6c1d0c11"


def decision(status: str = "pending", **overrides) -> dict:
    body = {
        "id": DECISION_ID,
        "status": status,
        "action": "payment.transfer",
        "summary": "Pay 50 to acme",
        "params": {"amount": 50, "to": "acme"},
        "approved_params": None,
        "policy": {"outcome": "review", "rule": "all", "explanation": "Payments are reviewed"},
        "risk": "medium",
        "required_approvals": 1,
        "reviews": [],
        "behaviour_version": 1,
        "created_at": "2026-11-30T12:00:00.123456Z",
        "expires_at": None,
        "release": {"status": None, "attempts": 0, "result": None, "released_at": None},
        "external_ref": "",
        "status_reason": "",
    }
    body.update(overrides)
    return body


def error(status: int, code: str, message: str = "No.", headers=None, details=None):
    body = {"error": {"code": code, "message": message}}
    if details:
        body["error"]["details"] = details
    return httpx.Response(status, json=body, headers=headers)


class FakeAispm:
    """Answers each request with the next queued reply for its (method, path).

    A reply is an httpx.Response, a dict (200 JSON), an exception to raise, or a
    callable taking the request.
    """

    def __init__(self) -> None:
        self.replies: dict[tuple[str, str], list] = {}
        self.requests: list[httpx.Request] = []

    def on(self, method: str, path: str, *replies) -> "FakeAispm":
        self.replies.setdefault((method, path), []).extend(replies)
        return self

    def bodies(self) -> list[dict]:
        return [json.loads(r.content) for r in self.requests if r.content]

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        queue = self.replies.get((request.method, request.url.path))
        if not queue:
            return error(404, "not_found", f"unexpected {request.method} {request.url.path}")
        reply = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(reply, Callable) and not isinstance(reply, type):
            reply = reply(request)
        if isinstance(reply, Exception):
            raise reply
        if isinstance(reply, dict):
            return httpx.Response(200, json=reply)
        return reply

    async def handle_async(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        return self.handle(request)


class Clock:
    """A fake monotonic clock; sleeping advances it and is recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 4))
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


def run_async(make_coroutine):
    """asyncio.run in a thread of its own: the calling thread may already run a loop
    (Playwright's sync API leaves one running when the main suite has browser tests)."""
    outcome = {}

    def target():
        try:
            outcome["value"] = asyncio.run(make_coroutine())
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller
            outcome["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "the coroutine did not finish"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
