"""The posture page and report in a real browser, checked with axe-core.

axe-core comes with the axe-playwright-python dev dependency (its bundled axe.min.js),
so nothing is vendored or fetched at test time. Every test here also fails, at
teardown, on a CSP violation, a page error or a window dialog (see conftest.py).
"""

import re

import pytest
from playwright.sync_api import expect

from approvals.posture import posture_run
from tests.browser.conftest import axe_violations
from tests.factories import ActionTypeFactory, AgentFactory, GrantFactory, agent_admin, auditor

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = "/tmp"


def assert_axe_clean(page):
    # Stricter than the rest of the suite: no violation at any impact.
    violations = axe_violations(page, impacts={"minor", "moderate", "serious", "critical"})
    assert not violations, "axe found:\n" + "\n".join(violations)


@pytest.fixture
def estate():
    action = ActionTypeFactory(
        key="payment.transfer",
        params_schema={"type": "object", "properties": {"amount": {"type": "number"}}},
    )
    agent = AgentFactory(slug="finance-agent", name="Finance agent")
    GrantFactory(agent=agent, action_type=action)
    posture_run()
    return agent


def test_an_agent_admin_reads_the_posture_and_follows_a_fix_link(page, login, estate):
    admin = agent_admin(username="ada")
    page.set_viewport_size({"width": 1280, "height": 800})
    login(page, admin.username, next="/posture/")

    expect(page.get_by_role("heading", name="Posture", exact=True)).to_be_visible()
    expect(page.locator(".score-card")).to_have_count(4)
    expect(page.locator("#formula")).to_contain_text("critical 40")
    expect(page.locator("svg.trend-chart polyline")).to_have_count(4)
    expect(page.locator(".posture-matrix tbody tr")).to_have_count(1)
    assert_axe_clean(page)
    page.screenshot(path=f"{SCREENSHOTS}/posture-1280.png", full_page=True)

    finding = page.locator('[data-check="privilege.grant_unconstrained"]')
    finding.get_by_role("link", name="Fix it").click()
    page.wait_for_url("**/security/agents/finance-agent/scopes/payment.transfer/edit/")


def test_the_page_fits_a_phone(page, login, estate):
    page.set_viewport_size({"width": 390, "height": 844})
    login(page, auditor(username="audrey").username, next="/posture/")

    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    assert_axe_clean(page)
    page.screenshot(path=f"{SCREENSHOTS}/posture-390.png", full_page=True)


def test_an_auditor_reads_the_report_and_downloads_the_pdf(page, login, estate):
    page.set_viewport_size({"width": 1280, "height": 800})
    login(page, auditor(username="audrey").username, next="/posture/")
    page.get_by_role("link", name="Four-question report").click()

    for name in ("How do you prevent bad decisions?", "How do you update behaviour?"):
        expect(page.get_by_role("heading", name=name)).to_be_visible()
    expect(page.locator("[data-digest]")).to_have_text(re.compile(r"^[0-9a-f]{64}$"))
    assert_axe_clean(page)
    page.screenshot(path=f"{SCREENSHOTS}/posture-report.png", full_page=True)

    with page.expect_download() as download:
        page.get_by_role("link", name="Download PDF").click()
    path = download.value.path()
    with open(path, "rb") as file:
        assert file.read(5) == b"%PDF-"
