"""The dry run and activation compare every part of a route (outcome, rule, approvals,
risk, ttl, bulk) and preview what a policy does to the pending decisions."""

import json

import pytest

from agents.services import behaviour_version_activate, behaviour_version_create
from approvals import selectors
from approvals.models import Decision
from approvals.services import decision_create
from tests.factories import ActionTypeFactory, AgentFactory, GrantFactory, agent_admin

pytestmark = pytest.mark.django_db

V1 = [
    {"id": "big", "action": "refund.issue", "when": "params.amount > 500", "outcome": "deny"},
    {
        "id": "refunds",
        "action": "refund.issue",
        "outcome": "review",
        "approvals": 1,
        "risk": "low",
        "bulk": True,
        "ttl": "8h",
    },
]
# Only the review rule's approvals, risk and bulk change: no outcome does.
V2 = [V1[0], {**V1[1], "approvals": 2, "risk": "high", "bulk": False}]


@pytest.fixture
def agent():
    action = ActionTypeFactory(
        key="refund.issue", summary_template="Refund {amount}", params_schema={"type": "object"}
    )
    agent = AgentFactory(slug="support", name="Support agent")
    GrantFactory(agent=agent, action_type=action)
    behaviour_version_activate(version=behaviour_version_create(agent=agent, policy=V1))
    agent.refresh_from_db()
    for amount in (40, 120, 300, 900):
        decision_create(agent=agent, action_type=action, params={"amount": amount}, reasoning="r")
    assert Decision.objects.filter(status="pending").count() == 3
    return agent


def test_a_change_of_approvals_risk_and_bulk_counts_as_a_routing_change(agent):
    dry = selectors.policy_dry_run(agent=agent, policy_rules=V2, days=7)
    assert (dry.replayed, dry.changed) == (4, 3)
    assert dry.transitions == {}
    assert dry.kinds == {"approvals": 3, "risk": 3, "bulk": 3}
    assert dry.pending.rerouted == 3 and dry.pending.cancelled == 0
    assert dry.pending.unchanged == 0


def test_an_unchanged_policy_changes_nothing(agent):
    dry = selectors.policy_dry_run(agent=agent, policy_rules=V1, days=7)
    assert (dry.changed, dry.kinds) == (0, {})
    assert (dry.pending.total, dry.pending.unchanged) == (3, 3)


def test_a_policy_that_denies_pending_decisions_previews_their_cancellation(agent):
    deny_all = [{"id": "no", "action": "refund.issue", "outcome": "deny"}]
    dry = selectors.policy_dry_run(agent=agent, policy_rules=deny_all, days=7)
    assert (dry.pending.cancelled, dry.pending.rerouted) == (3, 0)
    assert dry.transitions == {("review", "deny"): 3}


def test_the_dry_run_page_shows_counts_per_kind_and_the_pending_preview(client, agent):
    client.force_login(agent_admin(username="ada"))
    html = client.post(
        "/agents/support/versions/new/",
        {"policy": json.dumps(V2), "settings": "{}", "note": "n", "action": "dry_run", "days": 7},
    ).content.decode()
    assert "3 of 4 decisions would be routed differently" in html
    assert "<strong>3</strong> with a different approvals needed" in html
    assert "<strong>3</strong> with a different risk" in html
    assert "<strong>3</strong> with a different bulk approval" in html
    assert 'data-count="rerouted">3<' in html


def test_activation_then_rollback_restores_the_old_routing(client, agent):
    ada = agent_admin(username="ada")
    client.force_login(ada)
    v2 = behaviour_version_create(agent=agent, policy=V2, note="stricter")
    page = client.get(f"/agents/support/versions/{v2.number}/activate/").content.decode()
    assert 'data-count="rerouted">3<' in page
    response = client.post(
        f"/agents/support/versions/{v2.number}/activate/",
        {"reason": "Stricter", "reroute": "on"},
        follow=True,
    )
    message = response.content.decode()
    assert (
        "Activated v2. Re-routed 3 pending decisions to v2&#x27;s routing and cancelled 0"
        in message
    )
    assert "restored policy" not in message
    pending = Decision.objects.filter(status="pending")
    assert {(d.required_approvals, d.risk, d.bulk_allowed) for d in pending} == {(2, "high", False)}

    # The rollback page offers the re-route, with the same preview, and restores v1's routing.
    page = client.get("/agents/support/versions/1/activate/").content.decode()
    assert 'data-count="rerouted">3<' in page and 'name="reroute"' in page
    response = client.post(
        "/agents/support/versions/1/activate/",
        {"reason": "Finance is not staffed", "reroute": "on"},
        follow=True,
    )
    assert "Rolled back to v1. Re-routed 3 pending decisions to v1&#x27;s routing" in (
        response.content.decode()
    )
    pending = Decision.objects.filter(status="pending")
    assert {(d.required_approvals, d.risk, d.bulk_allowed) for d in pending} == {(1, "low", True)}
    assert {d.behaviour_version for d in pending} == {1}


def test_an_admin_may_opt_out_of_rerouting_and_is_told_so(client, agent):
    client.force_login(agent_admin(username="ada"))
    v2 = behaviour_version_create(agent=agent, policy=V2)
    response = client.post(
        f"/agents/support/versions/{v2.number}/activate/", {"reason": "Later"}, follow=True
    )
    assert "You chose not to re-route: 3 pending decisions keep the routing they had." in (
        response.content.decode()
    )
    assert {d.required_approvals for d in Decision.objects.filter(status="pending")} == {1}


def test_an_activation_that_changes_no_routing_reroutes_nothing(client, agent):
    client.force_login(agent_admin(username="ada"))
    v2 = behaviour_version_create(agent=agent, instructions="New words, same rules", policy=V1)
    page = client.get(f"/agents/support/versions/{v2.number}/activate/").content.decode()
    assert 'name="reroute"' not in page
    response = client.post(
        f"/agents/support/versions/{v2.number}/activate/",
        {"reason": "Wording", "reroute": "on"},
        follow=True,
    )
    html = response.content.decode()
    assert "Activated v2." in html and "Re-routed" not in html
