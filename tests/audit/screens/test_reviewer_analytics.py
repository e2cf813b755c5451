"""Attention measured in the inbox, and the reviewer analytics screen (issue 17)."""

import re
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from approvals import analytics, canaries, services
from approvals.models import ReviewAttention
from audit.models import AuditEvent
from tests.approvals.eager import eager_tasks  # noqa: F401 - autouse
from tests.factories import (
    ActionTypeFactory,
    AgentFactory,
    BehaviourVersionFactory,
    GrantFactory,
    UserFactory,
    agent_admin,
    auditor,
    reviewer,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    agent = AgentFactory(slug="helper", owner=UserFactory(username="owner"))
    agent.active_behaviour = BehaviourVersionFactory(
        agent=agent, number=1, policy=[{"id": "all", "outcome": "review", "risk": "high"}]
    )
    agent.save()
    action = ActionTypeFactory(key="thing.do")
    GrantFactory(agent=agent, action_type=action)
    return {"agent": agent, "action": action}


def _decide(world, what="the thing"):
    return services.decision_create(
        agent=world["agent"], action_type=world["action"], params={"what": what}, reasoning="r"
    )


def _approve_from_inbox(client, decision, *, wait: float, expanded: str = "0", token=None):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        page = client.get(f"/inbox/{decision.pk}/").content.decode()
    viewed = re.search(r'name="viewed" value="([^"]+)"', page).group(1)
    params_hash = re.search(r'name="params_hash" value="([0-9a-f]{64})"', page).group(1)
    with time_machine.travel(start + timedelta(seconds=wait), tick=False):
        return client.post(
            f"/inbox/{decision.pk}/approve/",
            {"params_hash": params_hash, "viewed": token or viewed, "params_expanded": expanded},
        )


def test_the_inbox_records_time_on_screen_before_an_approval(client, world):
    decision = _decide(world)
    person = reviewer()
    client.force_login(person)
    assert _approve_from_inbox(client, decision, wait=42).status_code == 302
    attention = ReviewAttention.objects.get(review__reviewer=person)
    assert attention.seconds_on_screen == pytest.approx(42, abs=0.2)
    assert attention.params_long is False and attention.params_expanded is None
    assert AuditEvent.objects.filter(event="review.attention_recorded").count() == 1


def test_the_inbox_records_whether_long_params_were_expanded(client, world):
    decision = _decide(world, what="x" * 500)
    client.force_login(reviewer())
    _approve_from_inbox(client, decision, wait=3, expanded="1")
    attention = ReviewAttention.objects.get()
    assert attention.params_long is True and attention.params_expanded is True


@pytest.mark.parametrize("token", ["forged", "x" * 400])
def test_a_forged_measurement_records_nothing_and_never_blocks_the_approval(client, world, token):
    decision = _decide(world)
    client.force_login(reviewer())
    assert _approve_from_inbox(client, decision, wait=5, token=token).status_code == 302
    decision.refresh_from_db()
    assert not decision.is_pending
    assert not ReviewAttention.objects.filter(seconds_on_screen__isnull=False).exists()


def test_a_measurement_from_another_decisions_page_is_ignored(client, world):
    first, second = _decide(world), _decide(world, what="other")
    client.force_login(reviewer())
    page = client.get(f"/inbox/{first.pk}/").content.decode()
    other_token = re.search(r'name="viewed" value="([^"]+)"', page).group(1)
    _approve_from_inbox(client, second, wait=1, token=other_token)
    assert not ReviewAttention.objects.filter(seconds_on_screen__isnull=False).exists()


def test_signals_per_reviewer_fast_high_risk_streaks_and_canary_catch_rate(client, world):
    fast, careful = reviewer(username="fast"), reviewer(username="careful")
    client.force_login(fast)
    for _ in range(3):
        _approve_from_inbox(client, _decide(world), wait=2)
    client.force_login(careful)
    _approve_from_inbox(client, _decide(world), wait=60)
    template = canaries.canary_template_save(
        actor=agent_admin(),
        agent=world["agent"],
        action_type=world["action"],
        params={"what": "wire everything"},
        reasoning="r",
    )
    services.decision_reject(
        decision=canaries.canary_insert(template=template), reviewer=careful, reason="No"
    )
    services.decision_approve(decision=canaries.canary_insert(template=template), reviewer=fast)
    rows = {
        r.username: r
        for r in analytics.reviewer_rows(since=timezone.now() - timedelta(hours=1), fast_seconds=10)
    }
    assert rows["fast"].fast_high_risk == 3 and rows["careful"].fast_high_risk == 0
    assert rows["fast"].longest_streak == 4
    assert (rows["fast"].canaries_seen, rows["fast"].catch_rate) == (1, 0)
    assert (rows["careful"].canaries_seen, rows["careful"].catch_rate) == (1, 100)

    client.force_login(auditor())
    page = client.get("/analytics/reviewers/").content.decode()
    assert 'data-reviewer="fast"' in page and "1 of 1 (100%)" in page
    assert "<svg" in page and "<polyline" in page
    assert ' style="' not in page and "<style" not in page


def test_percentiles_are_nearest_rank():
    assert analytics.percentile([], 50) is None
    assert analytics.percentile([5, 1, 3, 2, 4], 50) == 3
    assert analytics.percentile(list(range(1, 101)), 95) == 95


def test_queue_health_counts_arrivals_decisions_and_pending_per_hour(world):
    now = timezone.now()
    with time_machine.travel(now - timedelta(hours=3), tick=False):
        first = _decide(world)
        _decide(world)
    with time_machine.travel(now - timedelta(hours=1), tick=False):
        services.decision_approve(decision=first, reviewer=reviewer())
    health = analytics.queue_health(now=now, hours=6)
    assert sum(row["arrivals"] for row in health["hourly"]) == 2
    assert sum(row["decisions"] for row in health["hourly"]) == 1
    assert health["hourly"][-1]["pending"] == 1 == health["pending_now"]


@pytest.mark.parametrize("person", [agent_admin, auditor])
def test_agent_admins_and_auditors_see_the_analytics(client, person):
    client.force_login(person())
    assert client.get("/analytics/reviewers/?hours=72").status_code == 200


def test_reviewers_and_strangers_do_not(client):
    assert client.get("/analytics/reviewers/").status_code == 302
    client.force_login(reviewer())
    assert client.get("/analytics/reviewers/").status_code == 403
    client.force_login(auditor())
    assert client.post("/analytics/reviewers/").status_code == 405


def test_a_reviewer_who_can_see_canaries_has_their_catch_rate_marked_not_blind(client, world):
    """A reviewer who is also an auditor can read canary.inserted in the trail (and the
    export's canary column) before deciding: a perfect catch rate from them proves
    nothing, so the screen says so rather than present it as attention."""
    both, plain = reviewer(username="both"), reviewer(username="plain")
    both.groups.add(*auditor().groups.all())
    template = canaries.canary_template_save(
        actor=agent_admin(),
        agent=world["agent"],
        action_type=world["action"],
        params={"what": "wire everything"},
        reasoning="r",
    )
    for person in (both, plain):
        services.decision_reject(
            decision=canaries.canary_insert(template=template), reviewer=person, reason="No"
        )
    rows = {
        r.username: r
        for r in analytics.reviewer_rows(since=timezone.now() - timedelta(hours=1), fast_seconds=10)
    }
    assert (rows["both"].catch_rate, rows["both"].sees_canaries) == (100, True)
    assert (rows["plain"].catch_rate, rows["plain"].sees_canaries) == (100, False)

    client.force_login(auditor())
    page = client.get("/analytics/reviewers/").content.decode()
    both_row = page.split('data-reviewer="both"', 1)[1].split("</tr>", 1)[0]
    plain_row = page.split('data-reviewer="plain"', 1)[1].split("</tr>", 1)[0]
    assert 'data-signal="not-blind"' in both_row
    assert 'data-signal="not-blind"' not in plain_row
