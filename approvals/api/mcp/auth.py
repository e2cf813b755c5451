"""Bearer-key authentication in front of the MCP transport, with the REST API's checks.

Every HTTP request is authenticated afresh (the transport is stateless), so a key
revoked or expired mid-session is refused from its next request on.
"""

import json
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from django.http.request import split_domain_port, validate_host
from rest_framework import exceptions

from agents.auth import AgentKeyAuthentication
from agents.models import AgentKey

SCOPE_KEY = "aispm.key"


@dataclass
class _Request:
    """What AgentKeyAuthentication reads from a request: its META."""

    META: dict


def _authenticate(authorization: str, ip: str | None) -> AgentKey | str:
    """The key, or the reason it was refused."""
    close_old_connections()
    if not authorization:
        return "Use 'Authorization: Bearer <agent key>'."
    try:
        result = AgentKeyAuthentication().authenticate(
            _Request({"HTTP_AUTHORIZATION": authorization, "REMOTE_ADDR": ip or ""})
        )
    except exceptions.AuthenticationFailed as exc:
        return str(exc.detail)
    if result is None:
        return "Use 'Authorization: Bearer <agent key>'."
    return result[1]


authenticate = sync_to_async(_authenticate, thread_sensitive=True)


def _header(scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return ""


async def _refuse(send, status: int, code: str, message: str, headers=()) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BearerAuth:
    """ASGI middleware: a known Host, then a valid agent key, or 401 with WWW-Authenticate."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        host, _port = split_domain_port(_header(scope, b"host"))
        allowed = settings.ALLOWED_HOSTS
        if settings.DEBUG and not allowed:
            allowed = [".localhost", "127.0.0.1", "[::1]"]
        if not host or not validate_host(host, allowed):
            return await _refuse(send, 400, "invalid", "The Host header is not allowed.")
        client = scope.get("client")
        key = await authenticate(_header(scope, b"authorization"), client[0] if client else None)
        if isinstance(key, str):
            return await _refuse(
                send,
                401,
                "unauthenticated",
                key,
                headers=[(b"www-authenticate", b'Bearer realm="aispm"')],
            )
        scope[SCOPE_KEY] = key
        await self.app(scope, receive, send)


def key_from(ctx) -> AgentKey:
    """The authenticated key of an MCP request context."""
    return ctx.request.scope[SCOPE_KEY]
