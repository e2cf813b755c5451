"""A live aispm (pytest-django's live_server) and the Python client pointed at it."""

import contextlib
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from agents.models import ActionType, Agent
from agents.services import agent_key_issue
from aispm_site.celery import app as celery_app
from tests.factories import (
    ActionTypeFactory,
    AgentFactory,
    BehaviourVersionFactory,
    GrantFactory,
    UserFactory,
)

# The client in this checkout, whether or not `make install` put it in the venv.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "clients" / "python" / "src"))

import aispm_client  # noqa: E402

PAYMENT_SCHEMA = {
    "type": "object",
    "required": ["amount", "to"],
    "properties": {
        "amount": {"type": "number", "exclusiveMinimum": 0},
        "to": {"type": "string"},
        "memo": {"type": "string"},
    },
}
NOTE_SCHEMA = {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}}
POLICY = [
    {
        "id": "never-competitors",
        "action": "payment.transfer",
        "when": "params.to == 'competitor'",
        "outcome": "deny",
        "reason": "Never pay a competitor",
    },
    {
        "id": "review-over-1000",
        "action": "payment.transfer",
        "when": "params.amount > 1000",
        "outcome": "review",
        "reason": "Transfers over 1000 are reviewed",
    },
    {"id": "small-payments", "action": "payment.transfer", "outcome": "allow"},
    {"id": "notes", "action": "crm.note", "outcome": "allow"},
]


@dataclass
class Governance:
    agent: Agent
    payment: ActionType
    key: str


@pytest.fixture
def eager_release(settings):
    """Release in the live server's thread, right after commit, with or without Redis."""
    saved = celery_app.conf.task_always_eager
    settings.CELERY_TASK_ALWAYS_EAGER = True
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = saved


@pytest.fixture
def governance(eager_release) -> Governance:
    payment = ActionTypeFactory(
        key="payment.transfer",
        name="Transfer money",
        summary_template="Pay {amount} to {to}",
        params_schema=PAYMENT_SCHEMA,
        connector_type=ActionType.Connector.NONE,
    )
    note = ActionTypeFactory(
        key="crm.note",
        summary_template="Note: {text}",
        params_schema=NOTE_SCHEMA,
        connector_type=ActionType.Connector.NONE,
    )
    agent = AgentFactory(slug="payer", owner=UserFactory(username="owner"))
    agent.active_behaviour = BehaviourVersionFactory(
        agent=agent, number=1, instructions="Pay invoices on time.", policy=POLICY
    )
    agent.save()
    GrantFactory(agent=agent, action_type=payment)
    GrantFactory(agent=agent, action_type=note, limit_per_hour=1)
    return Governance(agent=agent, payment=payment, key=agent_key_issue(agent=agent).secret)


class RecordingTransport(httpx.HTTPTransport):
    """The real transport, keeping (method, path, status) of every exchange.

    paused() holds the client's requests back while the test thread uses the database:
    SQLite's shared in-memory test database refuses a read in the live server's thread
    while another thread writes ("database table is locked").
    """

    def __init__(self) -> None:
        super().__init__()
        self.exchanges: list[tuple[str, str, int]] = []
        self.gate = threading.Lock()

    @contextlib.contextmanager
    def paused(self):
        with self.gate:
            yield

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self.gate:
            response = super().handle_request(request)
            response.read()
        self.exchanges.append((request.method, request.url.path, response.status_code))
        return response


class AsyncRecordingTransport(httpx.AsyncHTTPTransport):
    """RecordingTransport for the AsyncClient (its loop runs in a thread of its own)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Lock()

    @contextlib.contextmanager
    def paused(self):
        with self.gate:
            yield

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        with self.gate:
            response = await super().handle_async_request(request)
            await response.aread()
        return response


@pytest.fixture
def transport() -> RecordingTransport:
    return RecordingTransport()


@pytest.fixture
def client(live_server, governance, transport):
    with aispm_client.Client(live_server.url, governance.key, transport=transport) as client:
        yield client
