"""The MCP server: handlers over the tools and resources, and its ASGI app at /mcp/."""

import logging
import time
import uuid
from contextlib import asynccontextmanager

import anyio
import mcp_types as types
from asgiref.sync import sync_to_async
from django.conf import settings
from mcp.server import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError

from aispm_site.logging import current_request_id
from approvals.models import Decision

from . import resources, tools
from .auth import BearerAuth, key_from

log = logging.getLogger("aispm.request")

POLL_FIRST = 0.1
POLL_MAX = 1.0
PROGRESS_EVERY = 5.0


def _django(function):
    return sync_to_async(function, thread_sensitive=True)


async def _list_tools(ctx, params) -> types.ListToolsResult:
    return types.ListToolsResult(tools=await _django(tools.tool_list)(key_from(ctx)))


async def settle(ctx, key, decision: Decision) -> Decision:
    """Wait, without blocking the loop, while the decision is pending review (up to
    AISPM_MCP_REVIEW_WAIT_SECONDS, with progress notifications) or releasing (up to
    AISPM_MCP_RELEASE_WAIT_SECONDS), and return it as it then stands."""
    review_until = time.monotonic() + settings.AISPM_MCP_REVIEW_WAIT_SECONDS
    release_until = None
    interval = POLL_FIRST
    said, said_at = None, 0.0
    if decision.status in tools.WAITING:
        # With its reviews loaded, so the loop reads them without touching the database.
        decision = await _django(tools.load)(key, decision.pk)
    while True:
        now = time.monotonic()
        if decision.status in tools.WAITING:
            if now >= review_until:
                return decision
            message = tools.waiting_message(decision)
            if message != said or now - said_at >= PROGRESS_EVERY:
                given = tools.approvals_given(decision)
                await ctx.session.report_progress(
                    given, decision.required_approvals, message=message
                )
                said, said_at = message, now
        elif decision.status in tools.RELEASING:
            if release_until is None:
                release_until = now + settings.AISPM_MCP_RELEASE_WAIT_SECONDS
            if now >= release_until:
                return decision
        else:
            return decision
        await anyio.sleep(interval)
        interval = min(interval * 2, POLL_MAX)
        decision = await _django(tools.load)(key, decision.pk)


async def _call_tool(ctx, params: types.CallToolRequestParams) -> types.CallToolResult:
    key = key_from(ctx)
    try:
        if params.name == tools.STATUS_TOOL:
            decision = await _django(tools.load_arguments)(key, params.arguments)
        elif params.name == tools.CANCEL_TOOL:
            decision = await _django(tools.cancel)(key, params.arguments)
        else:
            decision = await _django(tools.submit)(key, params.name, params.arguments)
            decision = await settle(ctx, key, decision)
    except tools.ToolError as error:
        return tools.error_result(error)
    return await _django(tools.outcome)(decision)


async def _list_resources(ctx, params) -> types.ListResourcesResult:
    return types.ListResourcesResult(resources=resources.RESOURCES)


async def _read_resource(ctx, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
    try:
        return await _django(resources.read)(key_from(ctx), str(params.uri))
    except tools.ToolError as error:
        raise MCPError(types.INVALID_PARAMS, error.message) from None


async def _list_prompts(ctx, params) -> types.ListPromptsResult:
    return types.ListPromptsResult(prompts=resources.PROMPTS)


async def _get_prompt(ctx, params: types.GetPromptRequestParams) -> types.GetPromptResult:
    try:
        return await _django(resources.prompt)(key_from(ctx), params.name)
    except tools.ToolError as error:
        raise MCPError(types.INVALID_PARAMS, error.message) from None


def build_server() -> Server:
    return Server(
        "aispm",
        title="aispm governance gateway",
        instructions=(
            "Each tool proposes an action to aispm, which allows, denies or holds it for "
            "a human reviewer. Read the result: a denial or rejection says why."
        ),
        on_list_tools=_list_tools,
        on_call_tool=_call_tool,
        on_list_resources=_list_resources,
        on_read_resource=_read_resource,
        on_list_prompts=_list_prompts,
        on_get_prompt=_get_prompt,
    )


class MCPApp:
    """The ASGI app for /mcp/: bearer auth in front of a stateless Streamable HTTP
    transport. `lifespan()` must run around it (aispm_site.asgi does)."""

    def __init__(self):
        self.manager = StreamableHTTPSessionManager(
            app=build_server(),
            # Stateless: any worker answers any request, and each one is authenticated.
            stateless=True,
            # SSE responses, so progress notifications reach the caller while it waits.
            json_response=False,
            max_request_body_size=settings.AISPM_MAX_BODY_BYTES,
        )
        self.app = BearerAuth(self.manager.handle_request)

    @asynccontextmanager
    async def lifespan(self):
        async with self.manager.run():
            yield

    async def __call__(self, scope, receive, send):
        """Serve one request and log one line for it, as RequestContextMiddleware does
        for Django's requests (method, path, status, duration; never headers or bodies)."""
        request_id = uuid.uuid4().hex
        current_request_id.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {
                    **message,
                    "headers": [
                        *message.get("headers", ()),
                        (b"x-request-id", request_id.encode()),
                    ],
                }
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            method, path = scope.get("method", ""), scope.get("path", "")
            log.info(
                "%s %s %s",
                method,
                path,
                status,
                extra={
                    "method": method,
                    "path": path,
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )
            current_request_id.set(None)
