import io
from datetime import timedelta

import pytest
import time_machine
import yaml
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from agents.models import Agent, Alert
from agents.services import agent_key_issue
from approvals import services, tasks
from approvals.models import Decision
from tests.factories import (
    ActionTypeFactory,
    AgentFactory,
    BehaviourVersionFactory,
    GrantFactory,
    UserFactory,
    reviewer,
)

pytestmark = pytest.mark.django_db
URL = "/api/v1/decisions/"


def make_world(rules, *, policy=None, action_rules=()):
    agent = AgentFactory(slug="watched", owner=UserFactory(username="own"), anomaly_rules=rules)
    agent.active_behaviour = BehaviourVersionFactory(
        agent=agent,
        number=1,
        policy=policy
        or [
            {
                "id": "no-mars",
                "action": "email.send",
                "when": "params.to.exists(t, t.endsWith('@mars.example'))",
                "outcome": "deny",
            },
            {"id": "all", "outcome": "allow"},
        ],
    )
    agent.save()
    email = ActionTypeFactory(
        key="email.send", params_schema={"type": "object"}, anomaly_rules=list(action_rules)
    )
    pay = ActionTypeFactory(key="payment.transfer", params_schema={"type": "object"})
    GrantFactory(agent=agent, action_type=email)
    GrantFactory(agent=agent, action_type=pay)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {agent_key_issue(agent=agent).secret}")
    return agent, api


def send(api, to="a@acme.example", action="email.send", **params):
    body = {
        "action": action,
        "reasoning": "r",
        "params": {"to": [to], **params} if action == "email.send" else params,
    }
    return api.post(URL, body, format="json")


def alerts(kind):
    return list(Alert.objects.filter(kind=f"anomaly.{kind}"))


def test_a_new_destination_forces_review_and_the_inbox_says_why(client):
    agent, api = make_world(
        [{"rule": "new_destination", "params": ["to"], "action": "force_review"}]
    )
    first = send(api, "maria@northwind.example").json()
    assert first["status"] == "pending"  # policy would allow
    decision = Decision.objects.get(pk=first["id"])
    assert decision.anomalies[0]["rule"] == "new_destination"
    assert "northwind.example" in decision.anomalies[0]["message"]
    assert decision.risk == "high"
    assert len(alerts("new_destination")) == 1
    services.decision_approve(decision=decision, reviewer=reviewer())
    Agent.objects.filter(pk=agent.pk).update(force_review_until=None)
    again = send(api, "joe@northwind.example").json()
    assert again["status"] == "approved"  # a seen domain is normal traffic
    client.force_login(reviewer())
    other = send(api, "x@evil.example").json()
    html = client.get(f"/inbox/{other['id']}/").content.decode()
    assert "New destination never approved for this agent: evil.example" in html


def test_split_transactions_route_the_rest_to_review():
    rule = {
        "rule": "split_transactions",
        "for_action": "payment.transfer",
        "param": "amount",
        "threshold": 1000,
        "window": "1h",
        "action": "force_review",
    }
    agent, api = make_world([rule])
    statuses = [send(api, action="payment.transfer", amount=400).json()["status"] for _ in range(3)]
    assert statuses == ["approved", "approved", "pending"]
    assert alerts("split_transactions")


def test_split_transactions_do_not_fire_on_normal_traffic():
    rule = {
        "rule": "split_transactions",
        "for_action": "payment.transfer",
        "threshold": 1000,
        "window": "1h",
        "action": "force_review",
    }
    agent, api = make_world([rule])
    now = timezone.now()
    for hour in range(4):
        with time_machine.travel(now + timedelta(hours=hour * 2)):
            assert send(api, action="payment.transfer", amount=600).json()["status"] == "approved"
    assert not alerts("split_transactions")


def test_out_of_scope_attempts_suspend_the_agent():
    agent, api = make_world(
        [{"rule": "out_of_scope", "threshold": 3, "window": "10m", "action": "suspend"}]
    )
    for _ in range(3):
        assert send(api, action="crm.delete_all").status_code == 403
    agent.refresh_from_db()
    assert agent.status == Agent.Status.SUSPENDED
    assert "out_of_scope" in agent.suspended_reason
    assert send(api).json()["error"]["code"] == "agent_suspended"
    assert len(alerts("out_of_scope")) == 1


def test_a_few_out_of_scope_attempts_spread_out_do_not_fire():
    agent, api = make_world(
        [{"rule": "out_of_scope", "threshold": 3, "window": "10m", "action": "suspend"}]
    )
    now = timezone.now()
    for step in range(3):
        with time_machine.travel(now + timedelta(minutes=15 * step)):
            send(api, action="crm.delete_all")
    agent.refresh_from_db()
    assert agent.status == Agent.Status.ACTIVE
    assert not alerts("out_of_scope")


def test_a_burst_of_denials_raises_an_alert():
    agent, api = make_world([{"rule": "denial_burst", "threshold": 3, "window": "15m"}])
    send(api, "ok@acme.example")
    for _ in range(3):
        assert send(api, "x@mars.example").json()["status"] == "denied"
    [alert] = alerts("denial_burst")
    assert alert.severity == "medium" and "3 decisions denied" in alert.message


def test_a_rate_spike_over_the_baseline_forces_review():
    rule = {
        "rule": "rate_spike",
        "factor": 3,
        "window": "10m",
        "baseline": "2h",
        "min_count": 5,
        "action": "force_review",
    }
    agent, api = make_world([rule])
    start = timezone.now()
    for minute in range(0, 100, 10):  # a steady 1 per 10 minutes
        with time_machine.travel(start + timedelta(minutes=minute)):
            send(api)
    with time_machine.travel(start + timedelta(minutes=101)):
        assert tasks.detect_rate_spikes.run() == 0  # normal
        for _ in range(8):
            send(api)
        assert tasks.detect_rate_spikes.run() == 1
        assert send(api).json()["status"] == "pending"
    assert alerts("rate_spike")


def test_a_key_used_from_a_new_address_is_flagged():
    agent, api = make_world([{"rule": "new_ip", "action": "alert"}])
    api.get(URL, REMOTE_ADDR="10.0.0.1")
    api.get(URL, REMOTE_ADDR="10.0.0.1")
    assert not alerts("new_ip")  # the first address is the baseline
    api.get(URL, REMOTE_ADDR="203.0.113.9")
    [alert] = alerts("new_ip")
    assert "203.0.113.9" in alert.message
    api.get(URL, REMOTE_ADDR="203.0.113.9")
    assert len(alerts("new_ip")) == 1


def test_rules_on_an_action_type_apply_to_every_agent():
    agent, api = make_world(
        [], action_rules=[{"rule": "new_destination", "params": ["to"], "action": "force_review"}]
    )
    assert send(api, "a@new.example").json()["status"] == "pending"


def test_high_severity_anomalies_are_emailed_to_agent_admins(
    mailoutbox, django_capture_on_commit_callbacks
):
    from tests.factories import agent_admin

    agent_admin(username="ada", email="ada@acme.example")
    agent, api = make_world([{"rule": "new_ip", "action": "alert", "severity": "high"}])
    api.get(URL, REMOTE_ADDR="10.0.0.1")
    with django_capture_on_commit_callbacks(execute=True):
        api.get(URL, REMOTE_ADDR="10.0.0.2")
    [mail] = mailoutbox
    assert mail.to == ["ada@acme.example"] and "anomaly.new_ip" in mail.subject


def _apply(tmp_path, anomalies):
    UserFactory(username="owner")
    config = {
        "action_types": [
            {"key": "email.send", "name": "Send", "params_schema": {}, "irreversible": True}
        ],
        "agents": [{"slug": "a1", "name": "A1", "owner": "owner", "anomalies": anomalies}],
    }
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(config))
    out = io.StringIO()
    call_command("apply_governance", str(path), stdout=out)
    return out.getvalue()


def test_anomaly_rules_are_declared_in_governance_yaml(tmp_path):
    rules = [{"rule": "out_of_scope", "threshold": 5, "window": "10m", "action": "suspend"}]
    output = _apply(tmp_path, rules)
    assert Agent.objects.get(slug="a1").anomaly_rules == rules
    assert "No changes." in _apply(tmp_path, rules)
    assert output


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"rule": "volcano"}, "agents[0].anomalies[0].rule: must be one of"),
        ({"rule": "out_of_scope"}, "agents[0].anomalies[0].threshold: is required"),
        (
            {"rule": "denial_burst", "threshold": 2, "window": "soon"},
            "agents[0].anomalies[0].window: must look like",
        ),
        ({"rule": "new_ip", "action": "explode"}, "agents[0].anomalies[0].action: must be one of"),
        (
            {"rule": "split_transactions", "threshold": 5, "for_action": "nope.nope"},
            "agents[0].anomalies[0].for_action: unknown action",
        ),
        ({"rule": "new_ip", "colour": 1}, "agents[0].anomalies[0].colour: unknown key"),
    ],
)
def test_bad_anomaly_rules_are_refused_with_their_path(tmp_path, rule, message):
    with pytest.raises(CommandError, match=message.replace("[", r"\[").replace("]", r"\]")):
        _apply(tmp_path, [rule])
    assert not Agent.objects.filter(slug="a1").exists()
