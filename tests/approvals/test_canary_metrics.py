"""Canaries never count in an agent's figures: the posture report and its checks, the
agent's pages, its feedback over MCP and its track record. They stay reviewer load
(queue health) and a reviewer's catch rate, and auditors see them in the trail."""

from datetime import timedelta

import pytest
from django.utils import timezone

from agents.models import AgentKey
from approvals import analytics, behaviour_selectors, canaries, selectors, services
from approvals.api.mcp import resources
from approvals.models import Decision, Review
from approvals.posture import checks_behaviour, checks_gates, checks_privilege
from approvals.posture.report import CANARY_FIGURE, posture_report
from approvals.posture.selectors import control_matrix
from tests.factories import (
    ActionTypeFactory,
    AgentFactory,
    BehaviourVersionFactory,
    DecisionFactory,
    GrantFactory,
    UserFactory,
    agent_admin,
    auditor,
    reviewer,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    agent = AgentFactory(slug="payer", owner=UserFactory(username="owner"))
    agent.active_behaviour = BehaviourVersionFactory(
        agent=agent,
        number=1,
        policy=[{"id": "all", "outcome": "review", "risk": "high", "bulk": True}],
    )
    agent.save()
    action = ActionTypeFactory(
        key="payment.transfer",
        summary_template="Pay {amount} to {to}",
        params_schema={
            "type": "object",
            "required": ["amount", "to"],
            "properties": {"amount": {"type": "number"}, "to": {"type": "string"}},
        },
    )
    GrantFactory(agent=agent, action_type=action)
    template = canaries.canary_template_save(
        actor=agent_admin(),
        agent=agent,
        action_type=action,
        params={"amount": 9800, "to": "XX00 UNKNOWN"},
        reasoning="The supplier changed bank details by email.",
    )
    return {"agent": agent, "action": action, "template": template}


def _canaries(world, *, reviewed_by=None) -> list[Decision]:
    """One canary of each end: pending, rejected, approved (blocked later) and expired."""
    person = reviewed_by or reviewer()
    pending, rejected, approved, expired = (
        canaries.canary_insert(template=world["template"]) for _ in range(4)
    )
    services.decision_reject(decision=rejected, reviewer=person, reason="Unknown IBAN")
    services.decision_approve(decision=approved, reviewer=person)
    Decision.objects.filter(pk=expired.pk).update(
        status=Decision.Status.EXPIRED, decided_at=timezone.now()
    )
    return [pending, rejected, approved, expired]


def _real_decisions(world):
    agent, action = world["agent"], world["action"]
    now = timezone.now()
    for status, outcome, approval in [
        ("released", "review", "human"),
        ("released", "allow", "auto"),
        ("rejected", "review", ""),
        ("denied", "deny", ""),
        ("pending", "review", ""),
    ]:
        decision = DecisionFactory(
            agent=agent,
            action_type=action,
            status=status,
            policy_outcome=outcome,
            approval=approval,
            decided_at=None if status == "pending" else now,
        )
        if outcome == "review" and status != "pending":
            Review.objects.create(
                decision=decision,
                reviewer=reviewer(),
                verdict="approve" if status == "released" else "reject",
                comment="" if status == "released" else "Not this one.",
            )


def _figures(report) -> dict:
    """Every figure but the canary count and the audit section's: a canary's own audit
    events stay in the trail, where auditors see them."""
    figures = {
        (section.question, label): value
        for section in report.sections
        for label, value in section.figures
        if label != CANARY_FIGURE and section.question != "audit"
    }
    tables = {section.question: section.table for section in report.sections}
    return {
        "figures": figures,
        "tables": tables,
        "decisions": report.decisions,
        "by_status": report.by_status,
    }


def _report():
    today = timezone.now().date()
    return posture_report(date_from=today - timedelta(days=6), date_to=today, now=timezone.now())


# --- the posture report -----------------------------------------------------------------


def test_the_posture_report_leaves_canaries_out_of_every_agent_figure(world):
    _real_decisions(world)
    before = _report()
    _canaries(world)
    after = _report()
    assert _figures(after) == _figures(before)
    assert dict(before.sections[0].figures)[CANARY_FIGURE] == 0
    assert dict(after.sections[0].figures)[CANARY_FIGURE] == 4


def test_the_control_matrix_counts_no_feedback_from_canaries(world):
    _canaries(world)
    [row] = [r for r in control_matrix(findings=[], now=timezone.now()) if r.agent.slug == "payer"]
    feedback = next(cell for cell in row.cells if cell.control == "feedback")
    assert feedback.text == "0 review(s) in 30 d"


# --- the posture checks ----------------------------------------------------------------


def test_a_canary_does_not_make_an_unused_grant_look_used(world):
    later = timezone.now() + timedelta(days=31)
    GrantFactory._meta.model.objects.update(created_at=timezone.now() - timedelta(days=1))
    canaries.canary_insert(template=world["template"], now=later - timedelta(days=1))
    hits = checks_privilege.grant_unused(later)
    assert [hit.subject for hit in hits] == ["payer:payment.transfer"]


def test_canaries_do_not_count_in_a_grants_busiest_hour(world):
    for _ in range(3):
        canaries.canary_insert(template=world["template"])
    assert checks_privilege.hourly_peaks(timezone.now()) == {}


def test_a_canary_does_not_hide_an_allow_rule_that_lets_everything_through(world, settings):
    settings.AISPM_POSTURE_ALLOW_MIN = 2
    agent = world["agent"]
    agent.active_behaviour.policy = [{"id": "yes", "outcome": "allow"}]
    agent.active_behaviour.save()
    for _ in range(3):
        DecisionFactory(
            agent=agent, action_type=world["action"], policy_outcome="allow", approval="auto"
        )
    canaries.canary_insert(template=world["template"])  # routed to review, as all canaries
    hits = checks_gates.allow_always_true(timezone.now())
    assert [hit.subject for hit in hits] == ["payer:payment.transfer"]


def test_rejected_canaries_do_not_raise_an_agents_rejection_rate(world, settings):
    settings.AISPM_POSTURE_REJECTION_MIN_REVIEWS = 2
    person = reviewer()
    for _ in range(3):
        decision = canaries.canary_insert(template=world["template"])
        services.decision_reject(decision=decision, reviewer=person, reason="Unknown IBAN")
    assert checks_behaviour.rejection_rate(timezone.now()) == []


def test_reviews_of_canaries_are_not_feedback_the_agent_has_not_read(world):
    _canaries(world)
    assert checks_behaviour.feedback_unread(timezone.now() + timedelta(days=8)) == []


def test_expired_canaries_do_not_make_a_queue_look_slower_than_its_ttl(world, settings):
    settings.AISPM_POSTURE_QUEUE_MIN_DECISIONS = 2
    for _ in range(3):
        decision = canaries.canary_insert(template=world["template"])
        Decision.objects.filter(pk=decision.pk).update(status=Decision.Status.EXPIRED)
    assert checks_gates.queue_expiring(timezone.now()) == []


# --- the agent's pages and feedback -----------------------------------------------------


def test_a_canary_is_not_a_use_on_the_agents_scopes_page(client, world):
    canaries.canary_insert(template=world["template"])
    client.force_login(agent_admin())
    page = client.get(f"/security/agents/{world['agent'].slug}/scopes/")
    assert page.status_code == 200
    [row] = [r for r in page.context["rows"] if r.action_type.key == "payment.transfer"]
    assert row.uses == 0
    assert page.context["excess"] == 1


def test_a_canary_is_not_in_the_agents_history_on_a_real_decision(client, world):
    _canaries(world)
    real = DecisionFactory(agent=world["agent"], action_type=world["action"], status="pending")
    client.force_login(reviewer())
    page = client.get(f"/inbox/{real.pk}/")
    assert page.status_code == 200
    assert page.context["record"]["history"] == []
    assert "Canary" not in page.content.decode()


def test_a_policy_dry_run_does_not_replay_canaries(world):
    _canaries(world)
    run = behaviour_selectors.policy_dry_run(
        agent=world["agent"], policy_rules=[{"id": "no", "outcome": "deny"}], days=7
    )
    assert run.replayed == 0


def test_the_mcp_feedback_resource_gives_no_review_of_a_canary(world, monkeypatch):
    monkeypatch.setattr(resources, "close_old_connections", lambda: None)
    _canaries(world)
    key = AgentKey(agent=world["agent"])
    assert resources.feedback(key)["results"] == []


# --- analytics: reviewer load and catch rate, but not per-action figures ----------------


def test_analytics_counts_canaries_as_reviewer_load_but_not_per_action(world):
    person = reviewer(username="careful")
    _canaries(world, reviewed_by=person)
    now = timezone.now()
    health = analytics.queue_health(now=now + timedelta(minutes=1))
    assert sum(row["arrivals"] for row in health["hourly"]) == 4
    assert analytics.action_rows(since=now - timedelta(hours=1)) == []
    [row] = analytics.reviewer_rows(since=now - timedelta(hours=1), fast_seconds=10)
    assert (row.canaries_seen, row.canaries_caught, row.catch_rate) == (2, 1, 50)


def test_version_metrics_and_the_agents_record_leave_canaries_out(world):
    decisions = _canaries(world)
    assert selectors.version_metrics(agent=world["agent"]) == []
    record = selectors.agent_record(decision=decisions[0])
    assert (record["approved"], record["rejected"]) == (0, 0)


def test_the_auditors_csv_export_marks_each_canary(client, world):
    import csv
    import io

    canary = canaries.canary_insert(template=world["template"])
    real = DecisionFactory(agent=world["agent"], action_type=world["action"])
    client.force_login(auditor())
    response = client.get("/audit/export.csv")
    assert response.status_code == 200
    body = b"".join(response.streaming_content).decode("utf-8-sig")
    marks = {row["decision_id"]: row["canary"] for row in csv.DictReader(io.StringIO(body))}
    assert marks == {str(canary.pk): "true", str(real.pk): "false"}


def test_a_canary_cancelled_by_a_new_policy_is_not_a_denial_in_a_burst(world):
    from approvals import anomalies

    agent = world["agent"]
    agent.anomaly_rules = [{"rule": "denial_burst", "threshold": 2, "window": "15m"}]
    agent.save()
    for _ in range(2):
        DecisionFactory(agent=agent, action_type=world["action"], status="denied", canary=True)
    assert anomalies.after_denial(agent=agent, now=timezone.now()) == []
    DecisionFactory(agent=agent, action_type=world["action"], status="denied")
    DecisionFactory(agent=agent, action_type=world["action"], status="denied")
    assert len(anomalies.after_denial(agent=agent, now=timezone.now())) == 1
