"""Reviewer-capacity screens in a real browser (issue 17): a reviewer's snoozes and the
agent admins' group notifications, reached from where a user looks for them, at 1280×800
and at 390 px, with axe-core finding nothing serious or critical.

Every test here also fails, at teardown, on a CSP violation, a page error or a
window dialog (see conftest.py).
"""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone
from playwright.sync_api import expect

from agents.services import behaviour_version_activate, behaviour_version_create
from approvals import routing
from approvals.models import DecisionSnooze, NotificationPreference
from approvals.services import decision_create
from audit.models import AuditEvent
from tests.browser.conftest import axe_violations, horizontal_overflow, overflowing_elements
from tests.factories import (
    ActionTypeFactory,
    AgentFactory,
    GrantFactory,
    UserFactory,
    agent_admin,
    reviewer,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SIZES = ({"width": 1280, "height": 800}, {"width": 390, "height": 800})
LONG_NAME = "procurement.department.for.the.northern.region@very-long-subsidiary-name.example"
SECRET = "T000/B000/XXXXsecretXXXX"


@pytest.fixture
def estate():
    action = ActionTypeFactory(
        key="email.send", name="Send email", summary_template="Email to {to}", params_schema={}
    )
    agent = AgentFactory(slug="sdr", name="SDR agent", owner=UserFactory(username="owen"))
    GrantFactory(agent=agent, action_type=action)
    policy = [{"id": "mail", "action": "email.send", "outcome": "review", "risk": "medium"}]
    behaviour_version_activate(version=behaviour_version_create(agent=agent, policy=policy))
    agent.refresh_from_db()

    def decide(to):
        return decision_create(agent=agent, action_type=action, params={"to": to}, reasoning="r")

    return decide


def _check_layout_and_axe(page, url: str) -> list[str]:
    problems = []
    for size in SIZES:
        page.set_viewport_size(size)
        page.goto(url)
        page.wait_for_load_state("load")
        overflow = horizontal_overflow(page)
        if overflow > 0:
            problems.append(
                f"{url} at {size['width']}px scrolls sideways by {overflow}px: "
                f"{overflowing_elements(page)}"
            )
        problems += [f"{url} at {size['width']}px: {v}" for v in axe_violations(page)]
    return problems


def test_a_reviewer_finds_their_snoozes_in_the_inbox_and_unsnoozes_one(page, login, estate):
    rita = reviewer(username="rita")
    later = estate(LONG_NAME)
    estate("now@example.com")
    routing.decision_snooze(decision=later, user=rita, until=timezone.now() + timedelta(hours=3))
    page.set_viewport_size(SIZES[0])
    login(page, "rita")
    tab = page.locator('.queue-tabs [data-queue="snoozed"]')
    expect(tab.locator(".tab-count")).to_have_text("1")
    expect(page.locator('.queue-tabs [data-queue="mine"] .tab-count')).to_have_text("1")
    expect(page.locator(f'.inbox-row[data-id="{later.pk}"]')).to_have_count(0)
    tab.click()
    page.wait_for_url("**/inbox/snoozed/")
    row = page.locator(f'li[data-id="{later.pk}"]')
    expect(row).to_contain_text(f"Email to {LONG_NAME}")
    expect(row.get_by_role("link")).to_have_attribute("href", f"/inbox/{later.pk}/")

    problems = _check_layout_and_axe(page, "/inbox/snoozed/")
    assert not problems, "\n".join(problems)

    page.set_viewport_size(SIZES[1])
    row.get_by_role("button", name="Unsnooze").click()
    page.wait_for_url("**/inbox/snoozed/")
    expect(page.get_by_role("status")).to_contain_text("back in your queue")
    expect(page.locator(f'li[data-id="{later.pk}"]')).to_have_count(0)
    assert not DecisionSnooze.objects.exists()
    assert AuditEvent.objects.filter(event="decision.unsnoozed").count() == 1
    page.locator('.queue-tabs [data-queue="mine"]').click()
    page.wait_for_url("**/inbox/")
    expect(page.locator(f'.inbox-row[data-id="{later.pk}"]')).to_have_count(1)


def test_an_agent_admin_sets_a_groups_chat_channel_from_the_agents_page(
    page, login, settings, live_server
):
    settings.AISPM_ALLOW_PRIVATE_TARGETS = True  # the loopback webhook below
    agent_admin(username="ada")
    Group.objects.create(name="Payments approvers with a long team name for the night shift")
    page.set_viewport_size(SIZES[0])
    login(page, "ada", next="/agents/")
    page.get_by_role("link", name="Group notifications").click()
    page.wait_for_url("**/agents/group-notifications/")

    problems = _check_layout_and_axe(page, "/agents/group-notifications/")

    page.set_viewport_size(SIZES[1])
    page.get_by_label("Group", exact=True).select_option(
        "Payments approvers with a long team name for the night shift"
    )
    page.get_by_label("Channel", exact=True).select_option("slack")
    page.get_by_label("Mode", exact=True).select_option("digest")
    page.get_by_label("At or above risk").select_option("medium")
    page.get_by_label("Digest every (minutes)").fill("30")
    page.get_by_label("Incoming webhook URL").fill(f"http://127.0.0.1:9/services/{SECRET}")
    page.get_by_role("button", name="Save").click()
    page.wait_for_url("**/agents/group-notifications/")
    expect(page.get_by_role("status")).to_contain_text("Saved")
    expect(page.locator('li[data-channel="slack"]')).to_contain_text("127.0.0.1/…")
    assert SECRET not in page.content()
    preference = NotificationPreference.objects.get(group__name__startswith="Payments")
    assert (preference.channel, preference.mode, preference.digest_minutes) == (
        "slack",
        "digest",
        30,
    )

    problems += _check_layout_and_axe(page, "/agents/group-notifications/")
    assert not problems, "\n".join(problems)
