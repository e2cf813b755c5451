"""The production process layout: gunicorn with uvicorn workers on aispm_site.asgi,
against pytest-django's PostgreSQL test database, driven by the official MCP client."""

import os
import sys
from pathlib import Path
from urllib.parse import quote

import anyio
import httpx
import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection

from agents.services import agent_key_issue
from approvals import services
from approvals.models import Decision
from approvals.tasks import release_decision
from tests.factories import (
    ActionTypeFactory,
    AgentFactory,
    BehaviourVersionFactory,
    GrantFactory,
    reviewer,
)
from tests.integration.conftest import Process, free_port, wait_for
from tests.live_asgi import close_django_thread_connections, mcp_session

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(120),
]
ROOT = Path(__file__).resolve().parents[2]


def server_env(**extra) -> dict:
    db = connection.settings_dict
    auth = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "AISPM_MCP_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="aispm_site.test_settings",
        # pytest-django's test database, where the tests' committed rows are.
        DATABASE_URL=f"postgres://{auth}@{host}/{db['NAME']}",
        SECRET_KEY=settings.SECRET_KEY,
        AISPM_ENCRYPTION_KEY=settings.AISPM_ENCRYPTION_KEY,
        LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


def serve(name: str, args: list[str], env: dict, log_dir: Path):
    port = free_port()
    process = Process(
        name,
        [arg.replace("{port}", str(port)) for arg in args],
        env=env,
        log_path=log_dir / f"{name}.log",
    )

    def answers() -> bool:
        if not process.alive:
            raise AssertionError(f"{name} exited at start-up\n{process.log()}")
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz/", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(answers, timeout=30, what=f"{name} to answer", details=process.log)
    return process, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def gunicorn(django_db_setup, tmp_path_factory):
    process, url = serve(
        "gunicorn",
        [
            *(sys.executable, "-m", "gunicorn", "aispm_site.asgi:application"),
            *("-k", "uvicorn_worker.UvicornWorker", "-w", "2"),
            *("-b", "127.0.0.1:{port}", "--log-level", "warning"),
        ],
        server_env(AISPM_MCP_REVIEW_WAIT_SECONDS="30"),
        tmp_path_factory.mktemp("gunicorn"),
    )
    yield f"{url}/mcp/"
    process.stop()


@pytest.fixture
def key():
    agent = AgentFactory(slug="prod-bot")
    agent.active_behaviour = BehaviourVersionFactory(
        agent=agent,
        number=1,
        policy=[{"id": "big", "when": "params.amount > 100", "outcome": "review"}],
    )
    agent.save()
    GrantFactory(
        agent=agent,
        action_type=ActionTypeFactory(
            key="payment.transfer",
            summary_template="Pay {amount}",
            params_schema={"type": "object", "properties": {"amount": {"type": "number"}}},
            default_outcome="allow",
        ),
    )
    return agent_key_issue(agent=agent).secret


def test_gunicorn_uvicorn_workers_list_call_and_wait_for_a_reviewer(gunicorn, key):
    person = reviewer(username="ann")

    def approve_pending():
        decision = Decision.objects.filter(status=Decision.Status.PENDING).first()
        if decision is None:
            return False
        # The release runs here, as a worker would; there is none in this layout.
        services.decision_approve(decision=decision, reviewer=person, release=False)
        release_decision.apply(args=[str(decision.pk)])
        return True

    async def review():
        while not await sync_to_async(approve_pending)():
            await anyio.sleep(0.1)

    async def main():
        async with mcp_session(gunicorn, key) as session:
            tools = [tool.name for tool in (await session.list_tools()).tools]
            allowed = await session.call_tool(
                "payment.transfer", {"params": {"amount": 5}, "reasoning": "small"}
            )
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(review)
                reviewed = await session.call_tool(
                    "payment.transfer", {"params": {"amount": 500}, "reasoning": "big"}
                )
            return tools, allowed, reviewed

    tools, allowed, reviewed = anyio.run(main)
    close_django_thread_connections()
    assert "payment.transfer" in tools
    assert allowed.structured_content["status"] == "released"
    assert reviewed.structured_content["status"] == "released"
    assert reviewed.structured_content["reviews"][0]["reviewer"] == "ann"


MAKE_RUN_SERVER = "uvicorn aispm_site.asgi:application --host $(HOST) --port $(PORT)"


def test_make_run_serves_a_styled_ui_and_mcp_with_one_log_line_per_request(tmp_path, key):
    makefile = (ROOT / "Makefile").read_text()
    assert MAKE_RUN_SERVER in makefile and "--no-access-log" in makefile
    env = server_env(DEBUG="true", LOG_LEVEL="INFO")
    process, url = serve(
        "make-run",
        [
            *(sys.executable, "-m", "uvicorn", "aispm_site.asgi:application"),
            *("--host", "127.0.0.1", "--port", "{port}", "--no-access-log"),
        ],
        env,
        tmp_path,
    )
    try:
        page = httpx.get(f"{url}/accounts/login/")
        assert page.status_code == 200
        css = httpx.get(f"{url}/static/aispm.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")

        async def main():
            async with mcp_session(f"{url}/mcp/", key) as session:
                return [tool.name for tool in (await session.list_tools()).tools]

        assert "payment.transfer" in anyio.run(main)
        close_django_thread_connections()
    finally:
        process.stop()
    log = process.log_path.read_text()
    assert log.count('"path": "/accounts/login/"') == 1
    assert log.count('"path": "/static/aispm.css"') == 1
    assert '"message": "POST /mcp/ 200"' in log
    assert 'HTTP/1.1" 200' not in log  # no access log line from uvicorn besides aispm's
