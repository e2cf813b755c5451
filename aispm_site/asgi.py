"""ASGI entry point: the MCP gateway at /mcp/, and Django for everything else.

Serve it with an ASGI server that runs the lifespan protocol (uvicorn, or gunicorn
with uvicorn workers): the MCP transport's task group lives for the process.
"""

import os
import warnings

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aispm_site.settings")

django_application = get_asgi_application()
# Under ASGI, Django reads a streamed body (a static file, a CSV export) into memory
# first, and warns each time. Production serves Django through aispm_site.wsgi and
# this app for /mcp/ only; `make run` serves both here, where that costs nothing.
warnings.filterwarnings(
    "ignore",
    message="StreamingHttpResponse must consume synchronous iterators",
    module="django.core.handlers.asgi",
)

from approvals.api.mcp.server import MCPApp  # noqa: E402  (needs the apps loaded)

MCP_PATHS = {"/mcp", "/mcp/"}
mcp_application = MCPApp()


async def _lifespan(receive, send) -> None:
    message = await receive()
    if message["type"] != "lifespan.startup":
        return
    started = False
    try:
        async with mcp_application.lifespan():
            await send({"type": "lifespan.startup.complete"})
            started = True
            while message["type"] != "lifespan.shutdown":
                message = await receive()
    except Exception as exc:
        failed = "shutdown" if started else "startup"
        await send({"type": f"lifespan.{failed}.failed", "message": str(exc)})
        raise
    await send({"type": "lifespan.shutdown.complete"})


async def application(scope, receive, send):
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    if scope["type"] == "http" and scope.get("path") in MCP_PATHS:
        return await mcp_application(scope, receive, send)
    return await django_application(scope, receive, send)
