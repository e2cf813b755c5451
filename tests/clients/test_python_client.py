"""The Python client (clients/python) against a live aispm."""

import asyncio
import functools
import threading
import time

import aispm_client
import httpx
import pytest
from aispm_client import WaitPolicy, gated

from approvals import selectors, services
from approvals.models import Decision
from tests.factories import reviewer

from .conftest import AsyncRecordingTransport, RecordingTransport

pytestmark = pytest.mark.django_db(transaction=True)

FAST = WaitPolicy(timeout=20, interval=0.05, max_interval=0.2)
FAST_GATE = WaitPolicy(timeout=20, interval=0.05, max_interval=0.2, cancel_on_timeout=True)


class Background:
    """Runs a blocking call in a thread; result() returns its value or raises its error."""

    def __init__(self, call):
        self.value = self.error = None
        self.thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self.thread.start()

    def _run(self, call):
        try:
            self.value = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            self.error = exc

    def result(self, timeout: float = 30):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the call did not return"
        if self.error is not None:
            raise self.error
        return self.value


def pending_decision(transport, timeout: float = 10) -> Decision:
    """The decision a background call submitted, once it is waiting for a reviewer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with transport.paused():
            decision = Decision.objects.filter(status=Decision.Status.PENDING).first()
        if decision is not None:
            return decision
        time.sleep(0.05)
    raise AssertionError("no pending decision appeared")


def approve(transport, decision, **kwargs):
    with transport.paused():
        services.decision_approve(
            decision=Decision.objects.get(pk=decision.pk),
            reviewer=reviewer(username="rita"),
            **kwargs,
        )


def reject(transport, decision, reason):
    with transport.paused():
        services.decision_reject(
            decision=Decision.objects.get(pk=decision.pk),
            reviewer=reviewer(username="rita"),
            reason=reason,
        )


def polled(transport: RecordingTransport, decision_id: str, timeout: float = 10) -> None:
    """Block until the client has polled this decision at least once."""
    path = f"/api/v1/decisions/{decision_id}/"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(method == "GET" and p == path for method, p, _ in list(transport.exchanges)):
            return
        time.sleep(0.02)
    raise AssertionError("the client never polled")


def test_an_allowed_submission_is_approved_then_released(client):
    decision = client.submit("payment.transfer", {"amount": 50, "to": "acme"}, "Invoice due.")

    assert decision.status in {"approved", "released"}
    assert decision.policy.rule == "small-payments"
    released = client.wait(decision, policy=FAST)
    assert released.released and released.release.status == "released"
    assert Decision.objects.get(pk=decision.id).status == Decision.Status.RELEASED


def test_a_denied_submission_is_a_decision_and_wait_raises_denied(client):
    decision = client.submit("payment.transfer", {"amount": 5, "to": "competitor"}, "Why not.")

    assert decision.status == "denied"
    with pytest.raises(aispm_client.Denied) as raised:
        client.wait(decision, policy=FAST)
    assert raised.value.reason == "Never pay a competitor"


def test_a_reviewed_submission_waits_until_a_reviewer_approves(client, transport):
    decision = client.submit("payment.transfer", {"amount": 5000, "to": "acme"}, "Big invoice.")
    assert decision.status == "pending" and decision.pending

    waiting = Background(lambda: client.wait(decision.id, policy=FAST))
    polled(transport, decision.id)
    approve(transport, pending_decision(transport))

    result = waiting.result()
    assert result.released
    assert [r.reviewer for r in result.reviews] == ["rita"]


def test_the_gated_function_runs_with_the_reviewers_edited_params(client, transport):
    paid = []

    @gated("payment.transfer", reasoning="Invoice INV-7 is due.", client=client, policy=FAST_GATE)
    def transfer(amount, to, memo=""):
        paid.append({"amount": amount, "to": to, "memo": memo})
        return "done"

    call = Background(lambda: transfer(5000, "acme"))
    decision = pending_decision(transport)
    assert paid == []
    approve(
        transport,
        decision,
        approved_params={"amount": 4500, "to": "acme", "memo": "INV-7 less credit"},
    )

    assert call.result() == "done"
    assert paid == [{"amount": 4500, "to": "acme", "memo": "INV-7 less credit"}]


def test_the_gated_function_raises_the_reviewers_reason_on_rejection(client, transport):
    @gated("payment.transfer", reasoning="Invoice is due.", client=client, policy=FAST_GATE)
    def transfer(amount, to):
        raise AssertionError("a rejected transfer must not run")

    call = Background(lambda: transfer(5000, "acme"))
    reject(transport, pending_decision(transport), "Wrong account: pay the EUR one")

    with pytest.raises(aispm_client.Rejected) as raised:
        call.result()
    assert raised.value.reason == "Wrong account: pay the EUR one"
    assert raised.value.reviewer == "rita"


def test_the_gated_function_never_runs_on_a_denial(client):
    @gated("payment.transfer", reasoning="Why not.", client=client, policy=FAST_GATE)
    def transfer(amount, to):
        raise AssertionError("a denied transfer must not run")

    with pytest.raises(aispm_client.Denied):
        transfer(5, "competitor")


def test_cancel_ends_a_pending_decision(client):
    decision = client.submit("payment.transfer", {"amount": 5000, "to": "acme"}, "Big invoice.")

    cancelled = client.cancel(decision.id)

    assert cancelled.status == "cancelled"
    assert Decision.objects.get(pk=decision.id).status == Decision.Status.CANCELLED
    assert client.cancel(decision.id).status == "cancelled"
    with pytest.raises(aispm_client.Cancelled):
        client.wait(decision.id, policy=FAST)


def test_cancelling_an_approved_decision_is_a_conflict(client):
    decision = client.submit("payment.transfer", {"amount": 50, "to": "acme"}, "Invoice due.")
    with pytest.raises(aispm_client.Conflict):
        client.cancel(decision.id)


def test_behaviour_is_cached_and_revalidated_with_a_304(client, transport):
    first = client.behaviour()
    second = client.behaviour()

    assert first.version == 1 and first.instructions == "Pay invoices on time."
    assert second is first
    statuses = [status for _, path, status in transport.exchanges if path == "/api/v1/behaviour/"]
    assert statuses == [200, 304]


def test_feedback_iterates_across_pages(client, governance, monkeypatch, transport):
    every_review = selectors.feedback_for_agent
    monkeypatch.setattr(selectors, "feedback_for_agent", functools.partial(every_review, limit=2))
    rita = reviewer(username="rita")
    for n in range(5):
        decision = client.submit(
            "payment.transfer", {"amount": 2000 + n, "to": "acme"}, f"Invoice {n}."
        )
        services.decision_reject(
            decision=Decision.objects.get(pk=decision.id), reviewer=rita, reason=f"No {n}"
        )

    # On PostgreSQL, feedback holds back reviews until every older transaction in the
    # cluster has finished (see selectors.feedback_for_agent); on a shared server another
    # database's open transaction can delay that for a while.
    deadline = time.monotonic() + 120
    while len(every_review(agent=governance.agent)) < 5:
        assert time.monotonic() < deadline, "the reviews never became visible as feedback"
        time.sleep(0.2)

    items = list(client.feedback())

    assert [item.comment for item in items] == [f"No {n}" for n in range(5)]
    assert all(item.verdict == "reject" and item.reviewer == "rita" for item in items)
    pages = [e for e in transport.exchanges if e[1] == "/api/v1/feedback/"]
    assert len(pages) == 4  # 2 + 2 + 1, then an empty page: caught up
    assert list(client.feedback(after=items[1].cursor))[0].comment == "No 2"


def test_over_the_hourly_limit_raises_rate_limited_with_retry_after(client):
    client.submit("crm.note", {"text": "first"}, "Log the call.")

    with pytest.raises(aispm_client.RateLimited) as raised:
        client.submit("crm.note", {"text": "second"}, "Log the call.")

    assert 0 < raised.value.retry_after <= 3600
    assert raised.value.status_code == 429


def test_an_idempotent_retry_returns_the_same_decision(client):
    body = ("payment.transfer", {"amount": 5000, "to": "acme"}, "Big invoice.")

    first = client.submit(*body, idempotency_key="invoice-7")
    again = client.submit(*body, idempotency_key="invoice-7")

    assert again.id == first.id
    assert Decision.objects.count() == 1


class LosesFirstResponse(RecordingTransport):
    """Delivers the first submission, then loses the answer, as a timeout would."""

    def handle_request(self, request):
        response = super().handle_request(request)
        if request.method == "POST" and not getattr(self, "lost", False):
            self.lost = True
            response.close()
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return response


def test_a_submission_retried_after_a_lost_answer_is_not_duplicated(live_server, governance):
    transport = LosesFirstResponse()
    with aispm_client.Client(live_server.url, governance.key, transport=transport) as client:
        client._sleep = lambda seconds: None
        decision = client.submit("payment.transfer", {"amount": 5000, "to": "acme"}, "Invoice.")

    posts = [e for e in transport.exchanges if e[0] == "POST"]
    assert [status for _, _, status in posts] == [201, 200]
    assert Decision.objects.count() == 1
    assert str(Decision.objects.get().pk) == decision.id


def test_errors_arrive_as_typed_exceptions(client, live_server):
    with pytest.raises(aispm_client.OutOfScope):
        client.submit("email.send", {"to": ["a@example.com"]}, "Say hi.")
    with pytest.raises(aispm_client.Invalid) as raised:
        client.submit("payment.transfer", {"amount": -1}, "Bad.")
    assert raised.value.details
    with pytest.raises(aispm_client.NotFound):
        client.get("00000000-0000-0000-0000-000000000000")
    with (
        aispm_client.Client(live_server.url, "aispm_wrong_key") as stranger,
        pytest.raises(aispm_client.Unauthenticated),
    ):
        stranger.behaviour()


def test_another_agents_decision_is_not_found(client, live_server, governance):
    from agents.services import agent_key_issue
    from tests.factories import AgentFactory, BehaviourVersionFactory, GrantFactory

    other = AgentFactory(slug="other")
    other.active_behaviour = BehaviourVersionFactory(agent=other, number=1, policy=[])
    other.save()
    GrantFactory(agent=other, action_type=governance.payment)
    mine = client.submit("payment.transfer", {"amount": 5000, "to": "acme"}, "Invoice.")

    other_key = agent_key_issue(agent=other).secret
    with aispm_client.Client(live_server.url, other_key) as theirs:
        with pytest.raises(aispm_client.NotFound):
            theirs.get(mine.id)
        with pytest.raises(aispm_client.NotFound):
            theirs.cancel(mine.id)


def test_the_async_client_submits_and_waits_for_a_reviewer(live_server, governance):
    transport = AsyncRecordingTransport()

    async def agent():
        async with aispm_client.AsyncClient(
            live_server.url, governance.key, transport=transport
        ) as client:
            decision = await client.submit(
                "payment.transfer", {"amount": 5000, "to": "acme"}, "Big invoice."
            )
            return await client.wait(decision, policy=FAST)

    call = Background(lambda: asyncio.run(agent()))
    approve(transport, pending_decision(transport))

    assert call.result().released
