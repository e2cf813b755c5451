"""Behaviour versions in a real browser: an agent admin edits the policy, dry runs it,
saves and activates v2, compares it with v1, then rolls back to v1.

Every test here also fails, at teardown, on a CSP violation, a page error or a
window dialog (see conftest.py).
"""

import re

import pytest
from playwright.sync_api import expect

from agents.models import BehaviourVersion
from agents.services import behaviour_version_activate, behaviour_version_create
from approvals.models import Decision
from approvals.services import decision_create
from audit.models import AuditEvent
from tests.factories import ActionTypeFactory, AgentFactory, UserFactory, agent_admin

pytestmark = [
    pytest.mark.browser,
    # Transactional, so that the live server's thread sees the rows.
    pytest.mark.django_db(transaction=True),
]

INSTRUCTIONS = "Be kind.\nRefund fairly."
SETTINGS = {"temperature": 0.2}
V1_POLICY = [
    {
        "id": "big-refunds",
        "action": "refund.issue",
        "when": "params.amount > 500",
        "outcome": "deny",
        "reason": "Large refunds go to finance",
    },
    {"id": "refunds", "action": "refund.issue", "outcome": "review"},
]
V2_POLICY = [
    {**V1_POLICY[0], "outcome": "review", "approvals": 2},
    V1_POLICY[1],
]
NOTE = "Review large refunds with two approvers instead of denying them"
ACTIVATE_REASON = "Finance wants to see large refunds, not lose them."
ROLLBACK_REASON = "Finance is not staffed for the review queue yet."


@pytest.fixture
def support_agent():
    action = ActionTypeFactory(
        key="refund.issue",
        name="Issue refund",
        summary_template="Refund {amount} to {customer}",
        params_schema={"type": "object"},
    )
    agent = AgentFactory(slug="support", name="Support agent", owner=UserFactory(username="owen"))
    v1 = behaviour_version_create(
        agent=agent, instructions=INSTRUCTIONS, settings=SETTINGS, policy=V1_POLICY, note="First"
    )
    behaviour_version_activate(version=v1)
    agent.refresh_from_db()
    for customer, amount in [("ann", 40), ("bob", 120), ("cy", 900), ("di", 1500)]:
        decision_create(
            agent=agent,
            action_type=action,
            params={"amount": amount, "customer": customer},
            reasoning="The customer asked for a refund.",
        )
    outcomes = sorted(Decision.objects.values_list("policy_outcome", flat=True))
    assert outcomes == ["deny", "deny", "review", "review"]
    return agent


def version_row(page, number: int):
    return page.locator(".card", has=page.get_by_role("heading", name="Versions")).locator(
        "tbody tr", has=page.get_by_text(f"v{number}", exact=True)
    )


def rule_change(page, rule_id: str):
    return page.locator(".rule-changes > li", has=page.get_by_text(rule_id, exact=True))


def rule_field(page, rule_id: str, field: str):
    """The cells of one field's row in a changed rule: the value before, the value after."""
    rows = rule_change(page, rule_id).get_by_role("row")
    return rows.filter(has=page.get_by_role("rowheader", name=field, exact=True)).locator("td")


def test_an_agent_admin_activates_a_new_version_then_rolls_back(
    page, login, live_server, support_agent
):
    ada = agent_admin(username="ada")
    agent = support_agent
    v1 = agent.active_behaviour
    detail_url = f"{live_server.url}/agents/support/"

    login(page, "ada", next="/agents/")
    page.get_by_role("link", name="Support agent").click()
    expect(page).to_have_url(detail_url)
    expect(page.get_by_role("heading", level=1)).to_contain_text("Support agent")
    expect(version_row(page, 1).locator(".badge")).to_have_text("active")

    # A new version starts from v1; change the large-refund rule's outcome.
    page.get_by_role("link", name="New version").click()
    expect(page).to_have_url(f"{detail_url}versions/new/")
    policy = page.get_by_label("Policy rules (YAML or JSON)")
    text = policy.input_value()
    assert "id: big-refunds" in text and "outcome: deny" in text
    policy.fill(text.replace("outcome: deny", "outcome: review\n  approvals: 2", 1))
    page.get_by_label("Note").fill(NOTE)

    page.get_by_role("button", name="Dry run the policy").click()
    result = page.get_by_role("region", name="Dry run result")
    expect(result).to_contain_text("2 of 4 decisions would be routed differently")
    expect(result).to_contain_text("2 from deny to review")
    expect(result).to_contain_text("Refund 900 to cy")
    expect(result).to_contain_text("Refund 1500 to di")
    # The edited form survives the dry run, and nothing was saved.
    expect(page.get_by_label("Policy rules (YAML or JSON)")).to_have_value(
        re.compile(r"outcome: review\n  approvals: 2")
    )
    expect(page.get_by_label("Note")).to_have_value(NOTE)
    assert BehaviourVersion.objects.filter(agent=agent).count() == 1

    page.get_by_role("button", name="Save version").click()
    expect(page).to_have_url(f"{detail_url}versions/2/activate/")
    expect(page.locator(".messages")).to_contain_text("Saved v2.")
    expect(page.get_by_role("heading", level=1)).to_have_text("Activate v2 of Support agent")
    expect(page.get_by_role("note")).to_contain_text(NOTE)
    changed = rule_change(page, "big-refunds")
    expect(changed).to_have_class(re.compile("diff-changed"))
    expect(changed.locator(".badge")).to_have_text("changed")
    expect(rule_field(page, "big-refunds", "outcome")).to_have_text(['"deny"', '"review"'])
    expect(rule_field(page, "big-refunds", "approvals")).to_have_text(["null", "2"])
    expect(rule_change(page, "refunds")).to_have_count(0)

    page.get_by_label("Reason").fill(ACTIVATE_REASON)
    page.get_by_role("button", name="Activate v2").click()
    expect(page).to_have_url(detail_url)
    expect(page.locator(".messages")).to_contain_text("Activated v2.")
    expect(version_row(page, 2).locator(".badge")).to_have_text("active")
    expect(version_row(page, 2)).to_contain_text(NOTE)
    expect(version_row(page, 1).locator(".badge")).to_have_count(0)

    # Compare defaults to the active version against the one before it.
    page.get_by_role("link", name="Compare versions").click()
    expect(page).to_have_url(f"{detail_url}versions/diff/")
    expect(page.get_by_label("From")).to_have_value("1")
    expect(page.get_by_label("To")).to_have_value("2")
    expect(rule_field(page, "big-refunds", "outcome")).to_have_text(['"deny"', '"review"'])
    expect(page.get_by_text("Same settings.")).to_be_visible()

    page.get_by_role("link", name="Back to Support agent").click()
    version_row(page, 1).get_by_role("link", name="Roll back to this version").click()
    expect(page).to_have_url(f"{detail_url}versions/1/activate/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Roll back Support agent to v1")
    expect(rule_field(page, "big-refunds", "outcome")).to_have_text(['"review"', '"deny"'])
    page.get_by_label("Reason").fill(ROLLBACK_REASON)
    page.get_by_role("button", name="Roll back to v1").click()
    expect(page).to_have_url(detail_url)
    expect(page.locator(".messages")).to_contain_text("Rolled back to v1.")
    expect(version_row(page, 1).locator(".badge")).to_have_text("active")
    expect(version_row(page, 2)).to_contain_text(NOTE)
    expect(version_row(page, 2).get_by_role("link", name="Activate")).to_be_visible()

    agent.refresh_from_db()
    assert agent.active_behaviour == v1
    v1.refresh_from_db()
    v2 = BehaviourVersion.objects.get(agent=agent, number=2)
    assert BehaviourVersion.objects.filter(agent=agent).count() == 2
    assert (v1.instructions, v1.settings, v1.policy) == (INSTRUCTIONS, SETTINGS, V1_POLICY)
    assert (v2.settings, v2.policy) == (SETTINGS, V2_POLICY)
    # Browsers submit a textarea's line breaks as CR LF, and the form stores them as sent.
    assert v2.instructions.splitlines() == INSTRUCTIONS.splitlines()
    assert (v2.note, v2.created_by) == (NOTE, ada)

    by_ada = AuditEvent.objects.filter(actor_user=ada, event__startswith="behaviour_version.")
    assert list(by_ada.values_list("event", "target_id")) == [
        ("behaviour_version.created", str(v2.pk)),
        ("behaviour_version.activated", str(v2.pk)),
        ("behaviour_version.rolled_back", str(v1.pk)),
    ]
    created, activated, rolled_back = by_ada
    assert created.data["note"] == NOTE
    assert (activated.data["number"], activated.data["previous"]) == (2, 1)
    assert activated.data["reason"] == ACTIVATE_REASON
    assert (rolled_back.data["number"], rolled_back.data["previous"]) == (1, 2)
    assert rolled_back.data["reason"] == ROLLBACK_REASON
