"""The MCP gateway at /mcp/, through the official SDK's client over streamable HTTP,
against aispm's ASGI app served by uvicorn."""

import anyio
import httpx
import pytest
from asgiref.sync import sync_to_async
from mcp.shared.exceptions import MCPError
from rest_framework.test import APIClient

from agents.models import AgentKey, Alert
from agents.services import agent_key_issue, agent_key_revoke, agent_suspend
from approvals import services, tasks
from approvals.models import Decision
from audit.models import AuditEvent
from tests.factories import (
    PAYMENT_SCHEMA,
    ActionTypeFactory,
    AgentFactory,
    BehaviourVersionFactory,
    GrantFactory,
    reviewer,
)
from tests.factories import SDR_POLICY as POLICY
from tests.live_asgi import LiveASGI, mcp_session

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

REASONING = "The invoice is due today."


@pytest.fixture(scope="module")
def live(django_db_setup, django_db_blocker):
    server = LiveASGI().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def releases_in_process(monkeypatch):
    """Release on commit, in the server, as the embedded default does, whether or not
    a broker is configured (the production layout test leaves it to a worker)."""
    monkeypatch.setattr(tasks.release_decision, "delay", tasks.release_decision.run)


@pytest.fixture
def mcp_url(live):
    return f"{live.url}/mcp/"


@pytest.fixture
def payments(db):
    return ActionTypeFactory(
        key="payment.transfer",
        name="Transfer money",
        summary_template="Pay {amount} to {to}",
        params_schema=PAYMENT_SCHEMA,
    )


@pytest.fixture
def email(db):
    return ActionTypeFactory(
        key="email.send",
        name="Send email",
        summary_template="Email {to}",
        params_schema={
            "type": "object",
            "required": ["to"],
            "properties": {"to": {"type": "string"}},
        },
        irreversible=True,
    )


@pytest.fixture
def bot(payments, email):
    agent = AgentFactory(slug="pay-bot")
    agent.active_behaviour = BehaviourVersionFactory(
        agent=agent,
        number=1,
        instructions="Pay invoices on time.",
        policy=[
            {
                "id": "no-gmail",
                "action": "email.send",
                "when": "params.to.endsWith('@gmail.com')",
                "outcome": "deny",
                "reason": "Never email personal addresses",
            },
            *[rule for rule in POLICY if rule["action"] == "payment.transfer"],
        ],
    )
    agent.save()
    GrantFactory(agent=agent, action_type=payments)
    GrantFactory(agent=agent, action_type=email)
    return agent


@pytest.fixture
def key(bot):
    return agent_key_issue(agent=bot).secret


def call(url, key, name, arguments, **kwargs):
    async def main():
        async with mcp_session(url, key) as session:
            return await session.call_tool(name, arguments, **kwargs)

    return anyio.run(main)


def pay(amount, **extra):
    return {"params": {"amount": amount, "to": "ACME"}, "reasoning": REASONING, **extra}


def test_it_lists_only_the_granted_tools_with_their_policy(mcp_url, key, bot):
    ActionTypeFactory(key="crm.delete", name="Delete a CRM record")

    async def main():
        async with mcp_session(mcp_url, key) as session:
            return (await session.list_tools()).tools

    tools = {tool.name: tool for tool in anyio.run(main)}
    assert set(tools) == {"payment.transfer", "email.send", "aispm.decision_status", "aispm.cancel"}
    transfer = tools["payment.transfer"]
    assert transfer.description.startswith("Transfer money.")
    assert "review when params.amount > 1000 (2 approvals)" in transfer.description
    assert "deny when params.to.endsWith('@gmail.com')" in tools["email.send"].description
    assert transfer.input_schema["properties"]["params"]["required"] == ["amount", "to"]
    assert transfer.input_schema["required"] == ["params", "reasoning"]
    assert "release" in transfer.output_schema["properties"]


def test_an_allowed_call_returns_the_released_decision_and_is_audited_as_mcp(mcp_url, key):
    result = call(mcp_url, key, "payment.transfer", pay(20))
    assert not result.is_error
    decision = result.structured_content
    assert decision["status"] == "released"
    assert decision["release"]["result"]["excerpt"] == "released to the agent"
    assert result.content[0].text.startswith("released: Pay 20 to ACME")
    event = AuditEvent.objects.get(event="decision.submitted")
    assert event.data["channel"] == "mcp"


def test_a_denied_call_is_a_tool_error_with_the_reason(mcp_url, key):
    result = call(mcp_url, key, "email.send", {"params": {"to": "x@gmail.com"}, "reasoning": "hi"})
    assert result.is_error
    assert result.content[0].text == "denied: Never email personal addresses"
    assert result.structured_content["decision"]["status"] == "denied"


def test_an_invalid_call_is_a_tool_error_with_details(mcp_url, key):
    result = call(mcp_url, key, "payment.transfer", pay("lots"))
    assert result.is_error
    assert result.content[0].text.startswith("invalid: params do not match the schema")
    assert not Decision.objects.exists()


def test_an_ungranted_action_is_out_of_scope_and_audited(mcp_url, key):
    ActionTypeFactory(key="crm.delete")
    result = call(mcp_url, key, "crm.delete", {"params": {"what": "all"}, "reasoning": "r"})
    assert result.is_error
    assert result.content[0].text.startswith("out_of_scope:")
    event = AuditEvent.objects.get(event="decision.out_of_scope")
    assert event.data["channel"] == "mcp"


def test_a_suspended_agent_gets_agent_suspended(mcp_url, key, bot):
    agent_suspend(agent=bot, reason="test")
    result = call(mcp_url, key, "payment.transfer", pay(20))
    assert result.is_error
    assert result.structured_content["error"]["code"] == "agent_suspended"


def test_a_reviewed_call_returns_pending_when_the_review_wait_is_zero(mcp_url, key):
    result = call(mcp_url, key, "payment.transfer", pay(5000))
    assert not result.is_error
    assert result.structured_content["status"] == "pending"
    assert "waiting for 1 of 2 approvals" in result.content[0].text
    decision_id = result.structured_content["id"]
    status = call(mcp_url, key, "aispm.decision_status", {"decision_id": decision_id})
    assert status.structured_content["id"] == decision_id


def call_while_reviewing(url, key, arguments, *acts, **kwargs):
    """Call the tool while reviewers act on its decision once it is pending, one act
    every two seconds (over the server's poll interval).

    The reviewer runs in Django's thread (sync_to_async), as the server's database work
    does, so SQLite's shared-cache table locks never see two writers at once."""

    def pending():
        return Decision.objects.filter(status=Decision.Status.PENDING).first()

    async def review():
        for _ in range(400):
            decision = await sync_to_async(pending)()
            if decision is not None:
                for number, act in enumerate(acts):
                    if number:
                        await anyio.sleep(2)
                    await sync_to_async(act)(decision)
                return
            await anyio.sleep(0.05)
        raise AssertionError("no pending decision to review")

    async def main():
        async with mcp_session(url, key) as session, anyio.create_task_group() as tasks:
            tasks.start_soon(review)
            return await session.call_tool("payment.transfer", arguments, **kwargs)

    return anyio.run(main)


def test_the_call_waits_for_reviewers_with_progress_and_returns_released(mcp_url, key, settings):
    settings.AISPM_MCP_REVIEW_WAIT_SECONDS = 30
    first, second = reviewer(username="ann"), reviewer(username="bob")

    def approve(person):
        def act(decision):
            decision = Decision.objects.get(pk=decision.pk)
            services.decision_approve(decision=decision, reviewer=person)

        return act

    progress = []

    async def on_progress(done, total, message):
        progress.append((done, total, message))

    result = call_while_reviewing(
        mcp_url, key, pay(5000), approve(first), approve(second), progress_callback=on_progress
    )
    assert result.structured_content["status"] == "released"
    assert (0, 2, "waiting for 1 of 2 approvals") in progress
    assert (1, 2, "waiting for 2 of 2 approvals") in progress


def test_a_rejection_returns_the_reviewers_reason_word_for_word(mcp_url, key, settings):
    settings.AISPM_MCP_REVIEW_WAIT_SECONDS = 30
    person = reviewer(username="ann")
    reason = "Pay ACME through the  <b>procurement</b> portal, not directly."
    result = call_while_reviewing(
        mcp_url,
        key,
        pay(5000),
        lambda d: services.decision_reject(decision=d, reviewer=person, reason=reason),
    )
    assert result.is_error
    assert result.content[0].text == f"rejected: {reason}"


def test_an_edit_returns_the_approved_params(mcp_url, key, settings, bot):
    settings.AISPM_MCP_REVIEW_WAIT_SECONDS = 30
    bot.active_behaviour.policy = [{"id": "all", "outcome": "review"}]
    bot.active_behaviour.save()
    person = reviewer(username="ann")
    edited = {"amount": 15, "to": "ACME"}
    result = call_while_reviewing(
        mcp_url,
        key,
        pay(20),
        lambda d: services.decision_approve(decision=d, reviewer=person, approved_params=edited),
    )
    assert result.structured_content["approved_params"] == edited
    assert '"amount": 15' in result.content[0].text


def test_the_agent_cancels_a_pending_decision(mcp_url, key):
    pending = call(mcp_url, key, "payment.transfer", pay(5000)).structured_content
    result = call(mcp_url, key, "aispm.cancel", {"decision_id": pending["id"]})
    assert not result.is_error
    assert result.structured_content["status"] == "cancelled"
    again = call(mcp_url, key, "aispm.cancel", {"decision_id": pending["id"]})
    assert again.is_error
    assert again.structured_content["error"]["code"] == "conflict"


def test_a_key_revoked_mid_session_is_refused_from_the_next_request(mcp_url, key, bot):
    issued = AgentKey.objects.get(agent=bot)

    async def main():
        async with mcp_session(mcp_url, key) as session:
            first = await session.call_tool("payment.transfer", pay(20))
            await sync_to_async(agent_key_revoke)(key=issued)
            with pytest.raises(MCPError):
                await session.call_tool("payment.transfer", pay(21))
            return first

    first = anyio.run(main)
    assert first.structured_content["status"] == "released"
    assert Decision.objects.count() == 1
    response = httpx.post(
        mcp_url,
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={"Authorization": f"Bearer {key}", "Accept": "application/json, text/event-stream"},
    )
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "The key has been revoked."


def test_two_agents_never_see_each_others_tools_or_decisions(mcp_url, key, payments):
    other = AgentFactory(slug="other-bot")
    other.active_behaviour = BehaviourVersionFactory(agent=other, number=1, policy=[])
    other.save()
    GrantFactory(agent=other, action_type=ActionTypeFactory(key="crm.note"))
    other_key = agent_key_issue(agent=other).secret
    mine = call(mcp_url, key, "payment.transfer", pay(5000)).structured_content

    async def main():
        async with mcp_session(mcp_url, other_key) as session:
            tools = [tool.name for tool in (await session.list_tools()).tools]
            status = await session.call_tool("aispm.decision_status", {"decision_id": mine["id"]})
            cancel = await session.call_tool("aispm.cancel", {"decision_id": mine["id"]})
            return tools, status, cancel

    tools, status, cancel = anyio.run(main)
    assert "payment.transfer" not in tools and "crm.note" in tools
    assert status.is_error and status.structured_content["error"]["code"] == "not_found"
    assert cancel.is_error and cancel.structured_content["error"]["code"] == "not_found"
    assert Decision.objects.get(pk=mine["id"]).status == "pending"


def test_a_key_used_from_a_new_address_over_mcp_is_flagged(mcp_url, key, bot):
    bot.anomaly_rules = [{"rule": "new_ip", "action": "alert"}]
    bot.save()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    client.get("/api/v1/behaviour/", REMOTE_ADDR="10.0.0.1")  # the baseline address
    assert not Alert.objects.filter(kind="anomaly.new_ip").exists()
    call(mcp_url, key, "payment.transfer", pay(20))  # from 127.0.0.1
    [alert] = Alert.objects.filter(kind="anomaly.new_ip")
    assert "127.0.0.1" in alert.message


def test_the_pending_decision_can_be_read_after_a_reviewer_approves(mcp_url, key):
    pending = call(mcp_url, key, "payment.transfer", pay(5000)).structured_content
    decision = Decision.objects.get(pk=pending["id"])
    for name in ("ann", "bob"):
        services.decision_approve(
            decision=Decision.objects.get(pk=decision.pk), reviewer=reviewer(username=name)
        )
    status = call(mcp_url, key, "aispm.decision_status", {"decision_id": pending["id"]})
    assert status.structured_content["status"] == "released"
    assert [r["reviewer"] for r in status.structured_content["reviews"]] == ["ann", "bob"]


@pytest.mark.parametrize("header", [None, "Bearer nonsense", "Basic abc"])
def test_a_missing_or_bad_key_gets_401_with_www_authenticate(mcp_url, db, header):
    headers = {"Authorization": header} if header else {}
    response = httpx.post(
        mcp_url,
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={**headers, "Accept": "application/json, text/event-stream"},
    )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["error"]["code"] == "unauthenticated"


def test_a_host_outside_allowed_hosts_is_refused_before_auth(mcp_url, key):
    response = httpx.post(
        mcp_url,
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={
            "Authorization": f"Bearer {key}",
            "Host": "rebound.example",
            "Accept": "application/json, text/event-stream",
        },
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "The Host header is not allowed."


def test_resources_and_prompt_give_behaviour_and_feedback(mcp_url, key, bot, settings):
    settings.AISPM_MCP_REVIEW_WAIT_SECONDS = 0
    decision = call(mcp_url, key, "payment.transfer", pay(5000)).structured_content
    services.decision_reject(
        decision=Decision.objects.get(pk=decision["id"]),
        reviewer=reviewer(username="ann"),
        reason="Use the portal.",
    )

    async def main():
        async with mcp_session(mcp_url, key) as session:
            listed = [str(r.uri) for r in (await session.list_resources()).resources]
            behaviour = await session.read_resource("aispm://behaviour")
            feedback = await session.read_resource("aispm://feedback")
            prompts = [p.name for p in (await session.list_prompts()).prompts]
            prompt = await session.get_prompt("aispm.behaviour")
            return listed, behaviour, feedback, prompts, prompt

    listed, behaviour, feedback, prompts, prompt = anyio.run(main)
    assert listed == ["aispm://behaviour", "aispm://feedback"]
    assert '"instructions": "Pay invoices on time."' in behaviour.contents[0].text
    assert '"comment": "Use the portal."' in feedback.contents[0].text
    assert prompts == ["aispm.behaviour"]
    assert prompt.messages[0].content.text == "Pay invoices on time."


def nested(depth):
    value = 1
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    "arguments",
    [
        pay(20, reasoning="a\x00b"),
        {"params": {"amount": 20, "to": "AC\x00ME"}, "reasoning": "r"},
        {"params": {"amount": 2**70, "to": "ACME"}, "reasoning": "r"},
        {"params": {"amount": 20, "to": "ACME", "x": nested(40)}, "reasoning": "r"},
        pay(20, confidence=True),
        pay(20, confidence=2),
        pay(20, evidence=[1]),
        pay(20, idempotency_key="x" * 300),
        pay(20, external_ref="sneaky"),
        {"params": "not an object", "reasoning": "r"},
        {"reasoning": "r"},
        {},
    ],
)
def test_hostile_arguments_are_tool_errors_never_crashes(mcp_url, key, arguments):
    result = call(mcp_url, key, "payment.transfer", arguments)
    assert result.is_error
    assert result.structured_content["error"]["code"] == "invalid"
    assert not Decision.objects.exists()


def test_bidi_and_huge_strings_are_stored_as_data(mcp_url, key):
    to = "\u202eEMCA" + "x" * 100_000
    result = call(
        mcp_url, key, "payment.transfer", {"params": {"amount": 20, "to": to}, "reasoning": "r"}
    )
    assert not result.is_error
    assert Decision.objects.get().params["to"] == to


@pytest.mark.parametrize(
    "body",
    [
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"payment.transfer",'
        b'"arguments":{"params":{"amount":NaN,"to":"x"},"reasoning":"r"}}}',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"payment.transfer",'
        b'"arguments":{"params":' + b"[" * 10_000 + b"]" * 10_000 + b',"reasoning":"r"}}}',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"payment.transfer",'
        b'"arguments":{"params":{"amount":1e999,"to":"x"},"reasoning":"r"}}}',
        b"\xff\xfe not json",
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"payment.transfer",'
        b'"arguments":{"params":{"amount":1,"to":"\\ud800"},"reasoning":"r"}}}',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"payment.transfer",'
        b'"arguments":{"params":{"amount":1,"\\udfff":"x"},"reasoning":"\\udc00"}}}',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a\\u0000b"}}',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"payment.transfer",'
        b'"arguments":{"params":{"amount":1,"to":"' + b"x" * 300_000 + b'"},"reasoning":"r"}}}',
    ],
)
def test_raw_hostile_bodies_never_get_a_5xx(mcp_url, key, body):
    response = httpx.post(
        mcp_url,
        content=body,
        headers={
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": "2025-11-25",
        },
        timeout=30,
    )
    assert response.status_code < 500, response.text
    assert not Decision.objects.exists()
