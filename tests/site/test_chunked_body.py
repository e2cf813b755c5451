"""A request body sent chunked, without Content-Length, through a real gunicorn.

Django's test client and live_server cannot send or decode chunked bodies, so this
starts gunicorn on `aispm_site.wsgi` against pytest-django's test database.
"""

import http.client
import json
import os
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

from agents.services import agent_key_issue
from approvals.models import Decision
from tests.factories import ActionTypeFactory, AgentFactory, BehaviourVersionFactory, GrantFactory
from tests.integration.conftest import Process, free_port, wait_for

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(120),
]
ROOT = Path(__file__).resolve().parents[2]
LIMIT = 256 * 1024


@pytest.fixture(scope="module")
def gunicorn(django_db_setup, tmp_path_factory):
    db = connection.settings_dict
    auth = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELERY_")}
    env.update(
        DJANGO_SETTINGS_MODULE="aispm_site.test_settings",
        # pytest-django's test database, where the tests' committed rows are.
        DATABASE_URL=f"postgres://{auth}@{host}/{db['NAME']}",
        SECRET_KEY=settings.SECRET_KEY,
        AISPM_ENCRYPTION_KEY=settings.AISPM_ENCRYPTION_KEY,
        LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    port = free_port()
    process = Process(
        "gunicorn",
        [
            *(sys.executable, "-m", "gunicorn", "aispm_site.wsgi:application"),
            *("-b", f"127.0.0.1:{port}", "-w", "1", "--log-level", "warning"),
        ],
        env=env,
        log_path=tmp_path_factory.mktemp("gunicorn") / "gunicorn.log",
    )

    def answers() -> bool:
        if not process.alive:
            raise AssertionError(f"gunicorn exited at start-up\n{process.log()}")
        try:
            probe = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            probe.request("GET", "/healthz/")
            probe.getresponse().read()
            return True
        except OSError:
            return False

    wait_for(answers, timeout=30, what="gunicorn to answer", details=process.log)
    yield port
    process.stop()


@pytest.fixture
def secret():
    agent = AgentFactory(slug="chunky")
    agent.active_behaviour = BehaviourVersionFactory(
        agent=agent, number=1, policy=[{"id": "all", "outcome": "review"}]
    )
    agent.save()
    GrantFactory(agent=agent, action_type=ActionTypeFactory(key="crm.note"))
    return agent_key_issue(agent=agent).secret


def post_chunked(port: int, secret: str, body: bytes, chunk: int = 4096):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    pieces = (body[i : i + chunk] for i in range(0, len(body), chunk))
    connection.request(
        "POST",
        "/api/v1/decisions/",
        body=pieces,
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
        encode_chunked=True,
    )
    response = connection.getresponse()
    return response.status, json.loads(response.read() or b"null")


def submission(size: int = 0) -> bytes:
    """A valid submission, padded with JSON whitespace to `size` bytes."""
    body = json.dumps(
        {"action": "crm.note", "params": {"what": "call back"}, "reasoning": "asked"}
    ).encode()
    return body + b" " * max(size - len(body), 0)


def test_a_chunked_json_body_is_read(gunicorn, secret):
    status, data = post_chunked(gunicorn, secret, submission(), chunk=7)
    assert status == 201, data
    decision = Decision.objects.get(pk=data["id"])
    assert decision.params == {"what": "call back"}


def test_a_chunked_body_of_exactly_the_limit_is_accepted(gunicorn, secret):
    status, data = post_chunked(gunicorn, secret, submission(LIMIT))
    assert status == 201, data


def test_a_chunked_body_over_the_limit_gets_413_too_large(gunicorn, secret):
    status, data = post_chunked(gunicorn, secret, submission(LIMIT + 1))
    assert status == 413
    assert data["error"]["code"] == "too_large"
    assert not Decision.objects.exists()
