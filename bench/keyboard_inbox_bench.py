"""Decisions per minute for a reviewer clearing 100 routine decisions with the keyboard.

A Playwright run against the real inbox, in Debian's Chromium, through pytest's live
server (so it needs no running server). Run it by hand from the repo root:

    .venv/bin/python -m pytest bench/keyboard_inbox_bench.py -q -s -p no:cacheprovider

N (default 100) routine decisions are submitted (low risk, one approval); the
reviewer logs in and presses `a` once per decision, waiting each time until the
next decision is shown. It prints the time and decisions per minute, and checks that
all N were approved with N keystrokes.
"""

import os
import time

import pytest
from playwright.sync_api import expect

from approvals.models import Decision
from approvals.services import decision_create
from tests.browser.conftest import browser, login, page, recorded  # noqa: F401 (fixtures)
from tests.factories import (
    ActionTypeFactory,
    AgentFactory,
    BehaviourVersionFactory,
    GrantFactory,
    UserFactory,
    reviewer,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

N = int(os.environ.get("N", "100"))
POLICY = [{"id": "routine", "action": "crm.note", "outcome": "review", "risk": "low", "bulk": True}]


def test_decisions_per_minute_for_routine_decisions(page, login):  # noqa: F811
    action = ActionTypeFactory(
        key="crm.note",
        name="Add CRM note",
        summary_template="Note: {title}",
        params_schema={"type": "object", "properties": {"title": {"type": "string"}}},
    )
    agent = AgentFactory(slug="sdr", name="SDR agent", owner=UserFactory(username="owen"))
    agent.active_behaviour = BehaviourVersionFactory(agent=agent, number=1, policy=POLICY)
    agent.save()
    GrantFactory(agent=agent, action_type=action)
    for n in range(N):
        decision_create(
            agent=agent, action_type=action, params={"title": f"Call {n}"}, reasoning="Log it."
        )
    reviewer(username="rita")
    page.set_viewport_size({"width": 1280, "height": 800})
    login(page, "rita")
    detail = page.locator("#decision-detail")
    keystrokes = 0
    started = time.perf_counter()
    for _ in range(N):
        shown = detail.get_attribute("data-decision-id")
        page.keyboard.press("a")
        keystrokes += 1
        if _ < N - 1:
            expect(detail).not_to_have_attribute("data-decision-id", shown)
    expect(page.locator("#inbox .inbox-row")).to_have_count(0)
    elapsed = time.perf_counter() - started
    approved = Decision.objects.exclude(status=Decision.Status.PENDING).count()
    print(
        f"\n{N} routine decisions, {keystrokes} keystrokes, {elapsed:.1f} s: "
        f"{N / elapsed * 60:.0f} decisions a minute ({elapsed / N * 1000:.0f} ms each)"
    )
    assert approved == N
