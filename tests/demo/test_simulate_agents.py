import io
import random
import re
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import timezone
from jsonschema import Draft202012Validator, FormatChecker

from agents.models import AgentKey
from approvals.models import Decision
from audit.models import AuditEvent
from demo import simulation
from tests.factories import UserFactory

DEMO_CONFIG = Path(settings.BASE_DIR) / "demo" / "governance.yaml"


def _row(output: str, label: str) -> int | None:
    """The total column of one summary row, or None if the row is absent."""
    match = re.search(rf"^\s+{re.escape(label)}\s+(\d+)", output, re.MULTILINE)
    return int(match.group(1)) if match else None


@pytest.fixture
def demo_agents():
    UserFactory(username="agentadmin")
    call_command("apply_governance", str(DEMO_CONFIG), stdout=io.StringIO())


@pytest.mark.django_db(transaction=True)
def test_it_fills_the_inbox_through_the_api(live_server, demo_agents):
    out = io.StringIO()
    call_command(
        "simulate_agents",
        *("--rate", "20", "--max-requests", "40", "--seed", "1", "--url", live_server.url),
        # The live server shares one in-memory SQLite connection across its threads.
        *("--concurrency", "1"),
        stdout=out,
    )
    output = out.getvalue()

    decisions = Decision.objects.select_related("agent", "key")
    assert Counter(d.agent.slug for d in decisions).keys() == set(simulation.DEMO_AGENTS)
    assert all(d.key.label == "simulator" for d in decisions)
    assert all(d.idempotency_key.startswith("sim-") for d in decisions)
    assert {d.policy_outcome for d in decisions} == {"allow", "review", "deny"}
    assert {"pending", "denied"} <= {d.status for d in decisions}
    assert _row(output, "decision pending") > 0
    assert _row(output, "decision approved") > 0
    assert _row(output, "decision denied") > 0

    out_of_scope = AuditEvent.objects.filter(event="decision.out_of_scope").count()
    assert out_of_scope >= 1
    assert _row(output, "out of scope (403)") == out_of_scope
    # Every in-scope request became a decision (201); the rest were refused as out of scope.
    assert decisions.count() + out_of_scope == 40
    assert _row(output, "requests sent") == 40
    assert _row(output, "HTTP 201") == decisions.count()
    assert _row(output, "HTTP 400") is None
    assert not re.search(r"HTTP 5\d\d", output)
    assert _row(output, "errors") == 0
    assert _row(output, "unexpected outcomes") == 0
    assert "latency p50 / p95" in output
    assert "aispm_" not in output  # keys are never printed


@pytest.mark.django_db(transaction=True)
def test_it_issues_short_lived_simulator_keys(live_server, demo_agents):
    call_command(
        "simulate_agents",
        *("--max-requests", "3", "--rate", "50", "--url", live_server.url),
        *("--agents", "finance-agent", "--concurrency", "1"),
        stdout=io.StringIO(),
    )
    key = AgentKey.objects.get(label="simulator")
    assert key.agent.slug == "finance-agent"
    assert key.expires_at - timezone.now() < timedelta(days=1)
    assert Decision.objects.exclude(agent__slug="finance-agent").count() == 0


@pytest.mark.django_db(transaction=True)
def test_it_rejects_an_agent_without_traffic(live_server, demo_agents):
    with pytest.raises(CommandError, match="no simulated traffic for 'ops-agent'"):
        call_command("simulate_agents", "--url", live_server.url, "--agents", "ops-agent")


@pytest.mark.django_db(transaction=True)
def test_it_asks_for_the_demo_config_when_agents_are_missing(live_server):
    with pytest.raises(CommandError, match="apply_governance demo/governance.yaml"):
        call_command("simulate_agents", "--url", live_server.url)


@pytest.mark.parametrize(
    "option",
    [
        ("--rate", "0"),
        ("--rate", "-1"),
        ("--rate", "501"),
        ("--rate", "nan"),
        ("--duration", "0"),
        ("--duration", "86401"),
        ("--max-requests", "0"),
    ],
)
def test_it_rejects_bad_options(option):
    with pytest.raises(CommandError, match=option[0]):
        call_command("simulate_agents", *option)


def test_it_names_the_url_when_the_server_is_unreachable():
    with pytest.raises(CommandError, match=re.escape("http://127.0.0.1:9")):
        call_command("simulate_agents", "--url", "http://127.0.0.1:9", "--duration", "1")


def _deal(seed: int, count: int, agents=simulation.DEMO_AGENTS) -> list[simulation.SimRequest]:
    deck = simulation.Deck(list(agents), random.Random(seed))
    return [deck.deal(set(agents)) for _ in range(count)]


def test_generated_params_match_the_demo_schemas():
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    validators = {
        action["key"]: Draft202012Validator(action["params_schema"], format_checker=FormatChecker())
        for action in config["action_types"]
    }
    for request in _deal(seed=7, count=2000):
        errors = [e.message for e in validators[request.action].iter_errors(request.params)]
        assert not errors, (request.agent, request.kind, errors)
        assert request.reasoning
        assert request.evidence
        assert 0 <= request.confidence <= 1


def test_the_mix_keeps_its_shares_and_repeats_with_a_seed():
    requests = _deal(seed=3, count=400)
    expected = Counter(r.expect for r in requests)
    assert expected[simulation.OUT_OF_SCOPE] == 20  # 5%
    assert expected[simulation.DENIED] == 20
    assert expected[simulation.APPROVED] == 50
    assert {r.agent for r in requests} == set(simulation.DEMO_AGENTS)
    kinds = Counter((r.agent, r.kind) for r in requests)
    assert kinds[("sdr-agent", "follow-up email")] > kinds[("sdr-agent", "bulk email")]
    assert [r.body() for r in _deal(seed=3, count=50)] == [r.body() for r in requests[:50]]
    assert [r.body() for r in _deal(seed=4, count=50)] != [r.body() for r in requests[:50]]


def test_a_paused_agent_leaves_the_others_mix_unchanged():
    requests = _deal(seed=5, count=300, agents=["sdr-agent"])
    assert {r.agent for r in requests} == {"sdr-agent"}
    share = sum(r.expect == simulation.OUT_OF_SCOPE for r in requests) / len(requests)
    assert 0.02 < share < 0.1
