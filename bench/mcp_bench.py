"""MCP tool call latency beside the REST call, for an allowed action.

Run from the repo root with PostgreSQL and Redis (CELERY_BROKER_URL, required):

    CELERY_BROKER_URL=redis://127.0.0.1:6379/10 .venv/bin/python bench/mcp_bench.py

It drops and creates `aispm_mcp_bench` (BENCH_DB), migrates it, seeds one agent with an
allowed `payment.transfer` through the services, and starts one uvicorn worker on
aispm_site.asgi, which serves both /api/v1/ and /mcp/. No Celery worker runs: an
approved decision is enqueued on Redis and left there, so neither figure includes the
release, and AISPM_MCP_RELEASE_WAIT_SECONDS=0 makes the MCP call return at once. At
the end it flushes the broker's Redis database and drops BENCH_DB.

Then, one call at a time after WARMUP unmeasured each, N times: (a) POST
/api/v1/decisions/ on a keep-alive httpx client; (b) tools/call through the official
MCP client's ClientSession (streamable HTTP, one POST per call with an SSE answer).
Each figure is from sending the request to having the decision in hand.
"""

import asyncio
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psycopg
import redis

ROOT = Path(__file__).resolve().parent.parent
DB = os.environ.get("BENCH_DB", "aispm_mcp_bench")
N = int(os.environ.get("N", "300"))
WARMUP = int(os.environ.get("WARMUP", "30"))
PORT = int(os.environ.get("PORT", "8791"))
BROKER = os.environ["CELERY_BROKER_URL"]
DATABASE_URL = f"postgres://postgres@127.0.0.1:5432/{DB}"


def recreate_database() -> None:
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{DB}"')
        c.execute(f'CREATE DATABASE "{DB}"')


def environment() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AISPM_MCP_")}
    env.update(
        DATABASE_URL=DATABASE_URL,
        CELERY_BROKER_URL=BROKER,
        SECRET_KEY="bench-only-secret-key-0123456789-0123456789-0123456789",
        SECURE_SSL_REDIRECT="false",
        ALLOWED_HOSTS="127.0.0.1",
        AISPM_MCP_RELEASE_WAIT_SECONDS="0",
        LOG_LEVEL="WARNING",
    )
    return env


def seed() -> str:
    os.environ.update(environment())
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aispm_site.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from agents.models import ActionType, Agent, BehaviourVersion, Grant
    from agents.services import agent_key_issue

    action = ActionType.objects.create(
        key="payment.transfer",
        name="Transfer money",
        summary_template="Pay {amount} to {to}",
        params_schema={
            "type": "object",
            "required": ["amount", "to"],
            "properties": {"amount": {"type": "number"}, "to": {"type": "string"}},
        },
        default_outcome="allow",
    )
    agent = Agent.objects.create(slug="bench-agent", name="Bench agent")
    agent.active_behaviour = BehaviourVersion.objects.create(
        agent=agent, number=1, instructions="", content_hash="0" * 64, policy=[]
    )
    agent.save()
    Grant.objects.create(agent=agent, action_type=action, limit_per_hour=1_000_000)
    return agent_key_issue(agent=agent).secret


def summary(name: str, samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[int(len(ms) * 0.95) - 1]
    return (
        f"{name:<6} n={len(ms)}  p50 {statistics.median(ms):6.2f} ms  p95 {p95:6.2f} ms  "
        f"mean {statistics.fmean(ms):6.2f} ms  min {ms[0]:6.2f} ms"
    )


async def measure(key: str) -> tuple[list[float], list[float]]:
    import httpx
    from mcp.client.session import ClientSession

    sys.path.insert(0, str(ROOT))
    from tests.live_asgi import mcp_session

    base = f"http://127.0.0.1:{PORT}"
    body = {"action": "payment.transfer", "reasoning": "bench"}
    rest, mcp = [], []
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}) as http:
        for i in range(WARMUP + N):
            started = time.perf_counter()
            response = await http.post(
                f"{base}/api/v1/decisions/", json={**body, "params": {"amount": i, "to": "x"}}
            )
            elapsed = time.perf_counter() - started
            assert response.status_code == 201 and response.json()["status"] == "approved"
            if i >= WARMUP:
                rest.append(elapsed)
    session: ClientSession
    async with mcp_session(f"{base}/mcp/", key) as session:
        await session.list_tools()
        for i in range(WARMUP + N):
            started = time.perf_counter()
            result = await session.call_tool(
                "payment.transfer", {"params": {"amount": i, "to": "y"}, "reasoning": "bench"}
            )
            elapsed = time.perf_counter() - started
            assert result.structured_content["status"] == "approved", result
            if i >= WARMUP:
                mcp.append(elapsed)
    return rest, mcp


def main() -> None:
    recreate_database()
    env = environment()
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    key = seed()
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "uvicorn", "aispm_site.asgi:application"),
            *("--port", str(PORT), "--no-access-log", "--log-level", "warning"),
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{PORT}/healthz/", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        rest, mcp = asyncio.run(measure(key))
    finally:
        server.terminate()
        server.wait(timeout=15)
        # The releases nobody took, and the bench database.
        redis.Redis.from_url(BROKER).flushdb()
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
    print(summary("REST", rest))
    print(summary("MCP", mcp))
    print(f"MCP/REST median: {statistics.median(mcp) / statistics.median(rest):.2f}x")


if __name__ == "__main__":
    main()
