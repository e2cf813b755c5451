"""Round trips a submission makes: PostgreSQL statements and Redis commands.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/aispm_x \
    CELERY_BROKER_URL=redis://127.0.0.1:6379/n .venv/bin/python bench/submission_queries.py

The database must be migrated (`manage.py migrate`); the script adds its own agent and
action types (idempotently). Each scenario POSTs through the whole WSGI stack
(django.test.Client: middleware, DRF, the submission service) after one unmeasured
warm-up request, and prints every statement it sent. Round trips to PostgreSQL are the
statements Django logs, which include each transaction's BEGIN and COMMIT; Redis round
trips are the packed commands redis-py sent (a pipeline or a script call is one),
including Celery's enqueue of a release.

Then it times N (default 500) review-routed submissions in this process, client and
server together: wall-clock and CPU time (time.process_time, this process only, so
PostgreSQL's and Redis's own work is not in it), per request.
"""

import json
import os
import sys
import time
import uuid
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aispm_site.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz")
os.environ.setdefault("ALLOWED_HOSTS", "testserver")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")

import django  # noqa: E402

django.setup()

import redis.connection  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from agents import services as agent_services  # noqa: E402
from agents.models import ActionType, Agent  # noqa: E402
from tests.factories import EMAIL_SCHEMA  # noqa: E402

POLICY = [
    {"id": "allow-notes", "action": "crm.note", "outcome": "allow", "reason": "Notes are routine"},
    {"id": "follow-ups", "action": "email.send", "outcome": "review", "ttl": "8h"},
    {"id": "tasks", "action": "crm.task", "outcome": "review", "risk": "low"},
]


def _world() -> str:
    """The bench agent with an email action (reviewed, irreversible), a CRM task (reviewed,
    so a standing approval could stand in) and a CRM note (allowed); a new key."""
    email, _ = ActionType.objects.get_or_create(
        key="email.send",
        defaults={
            "name": "Send email",
            "summary_template": "Email to {to}: {subject}",
            "params_schema": EMAIL_SCHEMA,
            "irreversible": True,
        },
    )
    note, _ = ActionType.objects.get_or_create(
        key="crm.note",
        defaults={
            "name": "CRM note",
            "params_schema": {"type": "object", "properties": {"text": {"type": "string"}}},
        },
    )
    task, _ = ActionType.objects.get_or_create(
        key="crm.task",
        defaults={
            "name": "CRM task",
            "params_schema": {"type": "object", "properties": {"text": {"type": "string"}}},
        },
    )
    agent = Agent.objects.filter(slug="submission-queries").first()
    if agent is None:
        agent = Agent.objects.create(slug="submission-queries", name="Submission queries")
        for action_type in (email, note, task):
            agent_services.grant_apply(agent=agent, action_type=action_type, limit_per_hour=10**8)
        version = agent_services.behaviour_version_create(agent=agent, policy=POLICY, actor=None)
        agent_services.behaviour_version_activate(version=version, actor=None)
    return agent_services.agent_key_issue(agent=agent).secret


def _body(action: str) -> dict:
    if action == "email.send":
        params = {"to": [f"lead{uuid.uuid4().hex[:8]}@example.com"], "subject": "Hi", "body": "x"}
    else:
        params = {"text": "call back"}
    return {
        "action": action,
        "params": params,
        "reasoning": "The prospect asked.",
        "evidence": {"signal": "reply"},
        "confidence": 0.8,
        "idempotency_key": uuid.uuid4().hex,
    }


def measure(client: Client, key: str, body: dict, expect: int) -> dict:
    redis_sends = []
    real_send = redis.connection.AbstractConnection.send_packed_command

    def counting_send(self, command, check_health=True):
        redis_sends.append(command)
        return real_send(self, command, check_health)

    with (
        mock.patch.object(
            redis.connection.AbstractConnection, "send_packed_command", counting_send
        ),
        CaptureQueriesContext(connection) as queries,
    ):
        response = client.post(
            "/api/v1/decisions/",
            json.dumps(body),
            content_type="application/json",
            headers={"authorization": f"Bearer {key}"},
        )
    assert response.status_code == expect, response.content
    statements = [q["sql"] for q in queries.captured_queries]
    return {
        "status": response.json()["status"],
        "statements": statements,
        "postgres": len(statements),
        "redis": len(redis_sends),
    }


def main() -> None:
    key = _world()
    client = Client()
    scenarios = [
        ("review-routed (the ingest bench's body)", lambda: _body("email.send"), 201),
        ("review-routed, a standing approval possible", lambda: _body("crm.task"), 201),
        ("allowed (released after commit)", lambda: _body("crm.note"), 201),
    ]
    for name, make, expect in scenarios:
        measure(client, key, make(), expect)  # warm-up: caches, connections, scripts
        result = measure(client, key, make(), expect)
        print(f"{name}: status {result['status']}")
        for sql in result["statements"]:
            print(f"    {sql[:150]}")
        print(f"  PostgreSQL round trips {result['postgres']}, Redis round trips {result['redis']}")
    body = _body("email.send")
    measure(client, key, body, 201)
    replay = measure(client, key, body, 200)
    print(
        f"replay of the same key and body: PostgreSQL round trips {replay['postgres']}, "
        f"Redis round trips {replay['redis']}"
    )
    for sql in replay["statements"]:
        print(f"    {sql[:150]}")
    n = int(os.environ.get("N", "500"))
    bodies = [json.dumps(_body("email.send")) for _ in range(n)]
    headers = {"authorization": f"Bearer {key}"}
    wall, cpu = time.perf_counter(), time.process_time()
    for body in bodies:
        client.post("/api/v1/decisions/", body, content_type="application/json", headers=headers)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        f"{n} review-routed submissions in this process: {wall / n * 1e6:.0f} us wall, "
        f"{cpu / n * 1e6:.0f} us CPU a request (load {os.getloadavg()[0]:.2f})"
    )


if __name__ == "__main__":
    main()
