import aispm_client
import httpx
import pytest
from aispm_client import AsyncClient
from fake_aispm import DECISION_ID, Clock, FakeAispm, decision, error, run_async

DECISIONS = "/api/v1/decisions/"
DETAIL = f"/api/v1/decisions/{DECISION_ID}/"


def run(fake, clock, scenario):
    async def main():
        transport = httpx.MockTransport(fake.handle_async)
        async with AsyncClient("http://aispm.test", "aispm_k", transport=transport) as client:
            client._sleep, client._clock = clock.asleep, clock
            return await scenario(client)

    return run_async(main)


@pytest.fixture
def fake():
    return FakeAispm()


@pytest.fixture
def clock():
    return Clock()


def test_submit_retries_with_one_key_and_wait_polls_until_released(fake, clock):
    fake.on("POST", DECISIONS, httpx.ConnectTimeout("slow"), httpx.Response(201, json=decision()))
    fake.on("GET", DETAIL, decision("pending"), decision("approved"), decision("released"))

    async def scenario(client):
        submitted = await client.submit("payment.transfer", {"amount": 1, "to": "a"}, "Due.")
        return await client.wait(submitted, timeout=30)

    assert run(fake, clock, scenario).released
    assert len({body["idempotency_key"] for body in fake.bodies()}) == 1
    assert clock.sleeps == [0.25, 0.5, 0.75, 1.125]


def test_rejected_and_rate_limited_raise_typed_errors(fake, clock):
    fake.on("GET", DETAIL, decision("rejected", status_reason="Too much"))
    fake.on("POST", DECISIONS, error(429, "rate_limited", headers={"Retry-After": "30"}))

    async def rejected(client):
        with pytest.raises(aispm_client.Rejected) as raised:
            await client.wait(DECISION_ID)
        return raised.value.reason

    async def limited(client):
        with pytest.raises(aispm_client.RateLimited) as raised:
            await client.submit("payment.transfer", {}, "Due.")
        return raised.value.retry_after

    assert run(fake, clock, rejected) == "Too much"
    assert run(fake, clock, limited) == 30


def test_wait_times_out(fake, clock):
    fake.on("GET", DETAIL, decision("pending"))

    async def scenario(client):
        with pytest.raises(aispm_client.WaitTimeout):
            await client.wait(DECISION_ID, timeout=4)

    run(fake, clock, scenario)
    assert sum(clock.sleeps) == pytest.approx(4)


def test_cancel(fake, clock):
    fake.on("POST", DETAIL + "cancel/", decision("cancelled"))

    async def scenario(client):
        return await client.cancel(DECISION_ID)

    assert run(fake, clock, scenario).status == "cancelled"


def test_behaviour_etag_cache_and_feedback_pages(fake, clock):
    behaviour = {
        "version": 2,
        "instructions": "Hi",
        "settings": {},
        "policy": [],
        "activated_at": None,
    }
    fake.on(
        "GET",
        "/api/v1/behaviour/",
        httpx.Response(200, json=behaviour, headers={"ETag": '"v2"'}),
        httpx.Response(304),
    )
    item = {"cursor": "c1", "decision_id": DECISION_ID, "verdict": "approve", "comment": "ok"}
    fake.on(
        "GET",
        "/api/v1/feedback/",
        {"results": [item], "next": "c1"},
        {"results": [], "next": "c1"},
    )

    async def scenario(client):
        first = await client.behaviour()
        second = await client.behaviour()
        items = [item async for item in client.feedback()]
        return first, second, items

    first, second, items = run(fake, clock, scenario)
    assert second is first
    assert [i.cursor for i in items] == ["c1"]
