"""Every page in the navigation, for every role, in a real browser: axe-core finds no
serious or critical violation, no page scrolls sideways at 390, 1280 or 1920 px, and
no request (the favicon included) ends in a 404.

Every test here also fails, at teardown, on a CSP violation, a page error or a
window dialog (see conftest.py).
"""

import pytest

from agents.services import agent_key_issue, behaviour_version_activate, behaviour_version_create
from approvals.models import Decision
from approvals.notifications import links
from approvals.services import decision_approve, decision_create
from tests.browser.conftest import axe_violations, horizontal_overflow, overflowing_elements
from tests.factories import (
    ActionTypeFactory,
    AgentFactory,
    GrantFactory,
    UserFactory,
    agent_admin,
    auditor,
    reviewer,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTHS = (390, 1280, 1920)
LONG_EMAIL = "procurement.department.for.the.northern.region@very-long-subsidiary-name.example"
TRANSFER_SCHEMA = {
    "type": "object",
    "properties": {
        "amount": {"type": "number"},
        "currency": {"type": "string", "maxLength": 3},
        "iban": {"type": "string", "maxLength": 34},
        "memo": {"type": "string", "maxLength": 2000},
    },
}
POLICY = [
    {"id": "notes", "action": "crm.note", "outcome": "review", "risk": "low", "bulk": True},
    {"id": "transfers", "action": "payment.transfer", "outcome": "review", "risk": "high"},
    {"id": "emails", "action": "email.send", "outcome": "review", "risk": "medium"},
]


@pytest.fixture
def estate():
    note = ActionTypeFactory(
        key="crm.note", name="Add CRM note", summary_template="Note: {title}", params_schema={}
    )
    transfer = ActionTypeFactory(
        key="payment.transfer",
        name="Transfer money",
        summary_template="Pay {amount} {currency}",
        params_schema=TRANSFER_SCHEMA,
        irreversible=True,
    )
    email = ActionTypeFactory(
        key="email.send", name="Send email", summary_template="Email to {to}", params_schema={}
    )
    agent = AgentFactory(slug="finance", name="Finance agent", owner=UserFactory(username="owen"))
    for action in (note, transfer, email):
        GrantFactory(agent=agent, action_type=action)
    v1 = behaviour_version_create(agent=agent, instructions="Pay on time.\n", policy=POLICY)
    behaviour_version_activate(version=v1)
    v2 = behaviour_version_create(
        agent=agent,
        instructions="Pay on time.\n",
        policy=[{**POLICY[0], "bulk": False}, *POLICY[1:]],
    )
    behaviour_version_activate(version=v2)
    agent.refresh_from_db()
    agent_key_issue(agent=agent, label="production")
    decisions = [
        decision_create(
            agent=agent,
            action_type=transfer,
            params={"amount": 12500.0, "currency": "EUR", "iban": "DE89370400440532013000"},
            reasoning="The invoice is due.",
        ),
        decision_create(
            agent=agent,
            action_type=email,
            params={"to": LONG_EMAIL, "subject": "A very long subject line " * 4},
            reasoning="They asked.",
        ),
    ]
    for n in range(3):
        decisions.append(
            decision_create(
                agent=agent, action_type=note, params={"title": f"Call {n}"}, reasoning="Log it."
            )
        )
    decision_approve(decision=decisions[-1], reviewer=UserFactory(username="rex"))
    decisions[-1].refresh_from_db()
    assert decisions[0].status == Decision.Status.PENDING
    return {"agent": agent, "pending": decisions[0], "decided": decisions[-1]}


def pages_for(role: str, estate) -> list[str]:
    pending, decided = estate["pending"].pk, estate["decided"].pk
    if role == "reviewer":
        return ["/", "/inbox/", f"/inbox/{pending}/", "/inbox/snoozed/"]
    if role == "agent_admin":
        return [
            "/",
            "/agents/",
            "/agents/finance/",
            "/agents/finance/versions/new/",
            "/agents/finance/versions/diff/",
            "/agents/finance/versions/1/activate/",
            "/security/alerts/",
            "/security/agents/finance/keys/",
            "/security/agents/finance/scopes/",
            "/security/agents/finance/scopes/payment.transfer/edit/",
            "/security/agents/finance/suspend/",
            "/agents/group-notifications/",
            "/posture/",
        ]
    if role == "auditor":
        return [
            "/",
            "/audit/",
            "/audit/?q=finance",
            f"/audit/decisions/{decided}/",
            f"/audit/decisions/{pending}/",
            "/audit/verification/",
            "/posture/",
            "/analytics/reviewers/",
        ]
    return ["/", "/security/global-stop/"]


def user_for(role: str):
    if role == "reviewer":
        return reviewer(username="rita")
    if role == "agent_admin":
        return agent_admin(username="ada")
    if role == "auditor":
        return auditor(username="audrey")
    return UserFactory(username="sue", is_superuser=True, is_staff=True)


@pytest.mark.parametrize("role", ["reviewer", "agent_admin", "auditor", "superuser"])
def test_every_page_passes_axe_and_fits_every_width(page, login, recorded, estate, role):
    user = user_for(role)
    page.set_viewport_size({"width": 1280, "height": 800})
    login(page, user.username, next="/")
    problems = []
    # A chat message's Approve link opens a confirmation page (signed, so built here).
    chat = [links.approve_path(estate["pending"])] if role == "reviewer" else []
    for url in pages_for(role, estate) + chat:
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 800})
            response = page.goto(url)
            assert response.status == 200, f"{url} answered {response.status}"
            page.wait_for_load_state("load")
            overflow = horizontal_overflow(page)
            if overflow > 0:
                problems.append(
                    f"{url} at {width}px scrolls sideways by {overflow}px: "
                    f"{overflowing_elements(page)}"
                )
            if width == 1280:
                problems += [f"{url}: {v}" for v in axe_violations(page)]
    failed = [
        f"{r.url} {r.response().status}"
        for r in recorded.requests
        if r.response() is not None and r.response().status >= 400
    ]
    assert not failed, "requests failed:\n" + "\n".join(failed)
    assert not problems, "\n".join(problems)


def test_the_diff_and_activate_pages_keep_heading_order(page, login, estate):
    agent_admin(username="ada")
    page.set_viewport_size({"width": 1280, "height": 800})
    login(page, "ada", next="/agents/finance/versions/diff/")
    for url in ("/agents/finance/versions/diff/", "/agents/finance/versions/1/activate/"):
        page.goto(url)
        rules = ("heading-order", "page-has-heading-one")
        found = [
            v
            for v in axe_violations(page, impacts={"minor", "moderate", "serious", "critical"})
            if v.startswith(rules)
        ]
        assert not found, f"{url}: {found}"


def test_every_page_names_a_favicon_that_loads(page, login, live_server):
    reviewer(username="rita")
    login(page, "rita")
    href = page.locator('link[rel="icon"]').get_attribute("href")
    response = page.request.get(f"{live_server.url}{href}")
    assert response.status == 200
    assert "svg" in response.headers["content-type"]


def test_a_long_address_wraps_inside_the_inbox_list_at_1280(page, login, estate):
    reviewer(username="rita")
    page.set_viewport_size({"width": 1280, "height": 800})
    login(page, "rita")
    table = page.locator(".inbox-table").bounding_box()
    listing = page.locator(".inbox-list").bounding_box()
    detail = page.locator(".inbox-detail").bounding_box()
    expires = page.get_by_role("columnheader", name="Expires").bounding_box()
    assert table["x"] + table["width"] <= listing["x"] + listing["width"] + 0.5
    assert listing["x"] + listing["width"] <= detail["x"]
    assert expires["x"] + expires["width"] <= listing["x"] + listing["width"] + 0.5


def test_on_a_phone_every_navigation_link_is_in_view(page, login):
    """Six links for a superuser wrap inside the bar: none is pushed off the screen."""
    UserFactory(username="sue", is_superuser=True, is_staff=True)
    page.set_viewport_size({"width": 390, "height": 800})
    login(page, "sue", next="/")
    links = page.locator("nav.mainnav a")
    labels = links.all_text_contents()
    assert labels == ["Inbox", "Agents", "Alerts", "Audit", "Posture", "Admin"]
    for n in range(links.count()):
        box = links.nth(n).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, labels[n]
    assert horizontal_overflow(page) <= 0
