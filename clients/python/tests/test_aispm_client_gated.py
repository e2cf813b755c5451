import aispm_client
import httpx
import pytest
from aispm_client import AsyncClient, Client, WaitPolicy, gated
from fake_aispm import DECISION_ID, Clock, FakeAispm, decision, run_async

DECISIONS = "/api/v1/decisions/"
DETAIL = f"/api/v1/decisions/{DECISION_ID}/"


@pytest.fixture
def fake():
    return FakeAispm()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def client(fake, clock):
    client = Client("http://aispm.test", "aispm_k", transport=httpx.MockTransport(fake.handle))
    client._sleep, client._clock = clock.sleep, clock
    return client


def test_the_function_runs_with_the_approved_edited_params(fake, client):
    calls = []
    fake.on("POST", DECISIONS, httpx.Response(201, json=decision("pending")))
    fake.on(
        "GET",
        DETAIL,
        decision("pending"),
        decision("released", approved_params={"amount": 40, "to": "acme", "memo": "edited"}),
    )

    @gated("payment.transfer", reasoning=lambda p: f"Invoice for {p['to']} is due", client=client)
    def transfer(amount, to, memo=""):
        calls.append((amount, to, memo))
        return "paid"

    assert transfer(50, to="acme") == "paid"

    assert calls == [(40, "acme", "edited")]
    body = fake.bodies()[0]
    assert body["action"] == "payment.transfer"
    assert body["params"] == {"amount": 50, "to": "acme", "memo": ""}
    assert body["reasoning"] == "Invoice for acme is due"
    assert transfer.__name__ == "transfer"


def test_keyword_arguments_collected_by_kwargs_become_params(fake, client):
    fake.on("POST", DECISIONS, httpx.Response(201, json=decision("released")))

    @gated("payment.transfer", reasoning="Due.", evidence={"invoice": "I-1"}, client=client)
    def transfer(**params):
        return params

    assert transfer(amount=50, to="acme") == {"amount": 50, "to": "acme"}
    assert fake.bodies()[0]["params"] == {"amount": 50, "to": "acme"}
    assert fake.bodies()[0]["evidence"] == {"invoice": "I-1"}


def test_a_rejection_raises_with_the_reviewers_reason_and_the_function_never_runs(fake, client):
    calls = []
    fake.on("POST", DECISIONS, httpx.Response(201, json=decision("pending")))
    fake.on("GET", DETAIL, decision("rejected", status_reason="Not this quarter"))

    @gated("payment.transfer", reasoning="Due.", client=client)
    def transfer(amount, to):
        calls.append(amount)

    with pytest.raises(aispm_client.Rejected) as raised:
        transfer(50, "acme")

    assert raised.value.reason == "Not this quarter"
    assert calls == []


def test_a_policy_denial_raises_denied(fake, client):
    denied = decision("denied", policy={"outcome": "deny", "rule": "r", "explanation": "No."})
    fake.on("POST", DECISIONS, httpx.Response(201, json=denied))

    @gated("payment.transfer", reasoning="Due.", client=client)
    def transfer(amount, to):
        raise AssertionError("must not run")

    with pytest.raises(aispm_client.Denied, match="No."):
        transfer(50, "acme")


def test_an_approval_that_is_not_yet_released_does_not_run_the_function(fake, client):
    fake.on("POST", DECISIONS, httpx.Response(201, json=decision("approved")))
    fake.on("GET", DETAIL, decision("approved"), decision("blocked", status_reason="Kill switch"))

    @gated("payment.transfer", reasoning="Due.", client=client)
    def transfer(amount, to):
        raise AssertionError("must not run")

    with pytest.raises(aispm_client.Blocked, match="Kill switch"):
        transfer(50, "acme")


def test_a_decision_still_pending_at_the_timeout_is_cancelled(fake, client):
    fake.on("POST", DECISIONS, httpx.Response(201, json=decision("pending")))
    fake.on("GET", DETAIL, decision("pending"))
    fake.on("POST", DETAIL + "cancel/", decision("cancelled"))

    @gated("payment.transfer", reasoning="Due.", client=client, policy=WaitPolicy(timeout=3))
    def transfer(amount, to):
        raise AssertionError("must not run")

    with pytest.raises(aispm_client.WaitTimeout):
        transfer(50, "acme")
    # The policy given replaces the default, which cancels: this one leaves it pending.
    assert [r.url.path for r in fake.requests if r.method == "POST"] == [DECISIONS]

    @gated("payment.transfer", reasoning="Due.", client=client)
    def transfer_default(amount, to):
        raise AssertionError("must not run")

    with pytest.raises(aispm_client.WaitTimeout) as raised:
        transfer_default(50, "acme")
    assert raised.value.decision.status == "cancelled"


def test_out_of_scope_raises_before_any_wait(fake, client):
    fake.on(
        "POST",
        DECISIONS,
        httpx.Response(403, json={"error": {"code": "out_of_scope", "message": "Not granted."}}),
    )

    @gated("payment.transfer", reasoning="Due.", client=client)
    def transfer(amount, to):
        raise AssertionError("must not run")

    with pytest.raises(aispm_client.OutOfScope):
        transfer(50, "acme")
    assert len(fake.requests) == 1


def test_star_args_cannot_be_gated(client):
    with pytest.raises(TypeError):

        @gated("payment.transfer", reasoning="Due.", client=client)
        def transfer(*amounts):
            pass


def test_a_coroutine_function_needs_an_async_client(client):
    with pytest.raises(TypeError):

        @gated("payment.transfer", reasoning="Due.", client=client)
        async def transfer(amount, to):
            pass


def test_an_empty_reasoning_is_refused_before_submitting(fake, client):
    @gated("payment.transfer", reasoning=lambda p: "", client=client)
    def transfer(amount, to):
        pass

    with pytest.raises(aispm_client.AispmError):
        transfer(50, "acme")
    assert fake.requests == []


def test_without_a_client_one_is_made_from_the_environment(monkeypatch, fake):
    monkeypatch.setenv("AISPM_URL", "http://aispm.test")
    monkeypatch.setenv("AISPM_KEY", "aispm_k")
    fake.on("POST", DECISIONS, httpx.Response(201, json=decision("released")))
    real_init = Client.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, transport=httpx.MockTransport(fake.handle))

    monkeypatch.setattr(Client, "__init__", init)

    @gated("payment.transfer", reasoning="Due.")
    def transfer(amount, to):
        return amount

    assert transfer(50, "acme") == 50
    assert fake.requests[0].headers["Authorization"] == "Bearer aispm_k"


def test_an_async_function_is_gated_through_the_async_client(fake):
    clock = Clock()
    fake.on("POST", DECISIONS, httpx.Response(201, json=decision("pending")))
    fake.on(
        "GET",
        DETAIL,
        decision("pending"),
        decision("released", approved_params={"amount": 10, "to": "acme"}),
    )

    async def main():
        async with AsyncClient(
            "http://aispm.test", "aispm_k", transport=httpx.MockTransport(fake.handle_async)
        ) as client:
            client._sleep, client._clock = clock.asleep, clock

            @gated("payment.transfer", reasoning="Due.", client=client)
            async def transfer(amount, to):
                return (amount, to)

            return await transfer(50, "acme")

    assert run_async(main) == (10, "acme")
