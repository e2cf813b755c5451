"""aispm's ASGI app (Django and the MCP gateway) served by uvicorn in a thread.

The test database is pytest-django's, so tests that talk to it commit their rows
(transactional_db). Clients use the official MCP SDK over streamable HTTP.
"""

import socket
import threading
import time
from contextlib import asynccontextmanager

import httpx2
import uvicorn
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

START_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LiveASGI:
    def __init__(self):
        from aispm_site.asgi import application

        self.port = free_port()
        config = uvicorn.Config(
            application,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            access_log=False,
            lifespan="on",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "LiveASGI":
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise AssertionError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        close_django_thread_connections()


@asynccontextmanager
async def mcp_session(url: str, key: str | None, *, timeout: float = 30.0):
    """An initialized ClientSession on `url` with the agent key as a bearer token."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=timeout) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def close_django_thread_connections() -> None:
    """Close the database connections of the thread sync_to_async runs Django's ORM on
    (outside any request), so the test database can be dropped at the end."""
    from asgiref.sync import SyncToAsync
    from django.db import connections

    SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=10)
