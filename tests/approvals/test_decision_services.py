import pytest

from agents.models import Outcome
from approvals import services
from approvals.models import Decision, Review
from audit.models import AuditEvent
from audit.selectors import audit_events_for
from tests.factories import (
    ActionTypeFactory,
    AgentFactory,
    BehaviourVersionFactory,
    GrantFactory,
    UserFactory,
    reviewer,
)

pytestmark = pytest.mark.django_db

RULES = [
    {"id": "deny-big", "when": "params.amount > 100000", "outcome": "deny", "reason": "Too big"},
    {
        "id": "two",
        "when": "params.amount > 1000",
        "outcome": "review",
        "approvals": 2,
        "ttl": "4h",
        "reason": "Two approvers",
    },
    {"id": "small", "outcome": "allow", "reason": "Small transfers are fine"},
]


@pytest.fixture
def agent():
    owner = UserFactory(username="owner")
    agent = AgentFactory(slug="finance", owner=owner)
    agent.active_behaviour = BehaviourVersionFactory(agent=agent, number=3, policy=RULES)
    agent.save()
    return agent


@pytest.fixture
def action(agent):
    action = ActionTypeFactory(
        key="payment.transfer",
        summary_template="Pay {amount} to {to}",
        params_schema={
            "type": "object",
            "required": ["amount", "to"],
            "properties": {"amount": {"type": "number"}, "to": {"type": "string"}},
        },
    )
    # A reviewer's edit passes the agent's gate, so the agent holds the grant.
    GrantFactory(agent=agent, action_type=action)
    return action


def _submit(agent, action, amount):
    return services.decision_create(
        agent=agent,
        action_type=action,
        params={"amount": amount, "to": "Acme"},
        reasoning="Invoice is due.",
        evidence={"invoice": "INV-1"},
        confidence=0.9,
    )


def test_it_routes_and_records_the_route(agent, action):
    allowed = _submit(agent, action, 10)
    assert allowed.status == Decision.Status.APPROVED
    assert allowed.approval == Decision.Approval.AUTO
    assert allowed.approved_params == allowed.params
    denied = _submit(agent, action, 200000)
    assert denied.status == Decision.Status.DENIED
    pending = _submit(agent, action, 5000)
    assert pending.status == Decision.Status.PENDING
    assert pending.policy_outcome == Outcome.REVIEW
    assert pending.policy_rule == "two"
    assert pending.required_approvals == 2
    assert pending.behaviour_version == 3
    assert pending.summary == "Pay 5000 to Acme"
    assert (pending.expires_at - pending.created_at).total_seconds() == 4 * 3600
    event = audit_events_for(target=pending).get()
    assert event.event == "decision.submitted"
    assert event.actor_label == "finance"
    assert event.data["policy"]["rule"] == "two"


def test_two_approvals_need_two_distinct_reviewers(agent, action):
    decision = _submit(agent, action, 5000)
    first, second = reviewer(), reviewer()
    decision = services.decision_approve(decision=decision, reviewer=first)
    assert decision.status == Decision.Status.PENDING
    with pytest.raises(services.ReviewNotAllowed):
        services.decision_approve(decision=decision, reviewer=first)
    decision = services.decision_approve(decision=decision, reviewer=second)
    assert decision.status == Decision.Status.APPROVED
    assert decision.approval == Decision.Approval.HUMAN
    assert decision.decided_by == second
    events = list(audit_events_for(target=decision).values_list("event", flat=True))
    assert events == [
        "decision.submitted",
        "decision.review_added",
        "decision.review_added",
        "decision.approved",
    ]


def test_the_agents_owner_cannot_approve(agent, action):
    decision = _submit(agent, action, 5000)
    with pytest.raises(services.ReviewNotAllowed):
        services.decision_approve(decision=decision, reviewer=agent.owner)
    assert not Review.objects.exists()


def test_edit_and_approve_keeps_both_params(agent, action):
    decision = _submit(agent, action, 5000)
    edited = {"amount": 4000, "to": "Acme"}
    decision = services.decision_approve(
        decision=decision, reviewer=reviewer(), approved_params=edited
    )
    decision = services.decision_approve(decision=decision, reviewer=reviewer())
    assert decision.status == Decision.Status.APPROVED
    assert decision.params == {"amount": 5000, "to": "Acme"}
    assert decision.approved_params == edited
    review = decision.reviews.first()
    assert review.verdict == Review.Verdict.EDIT_APPROVE
    assert review.params_before["amount"] == 5000


def test_reject_needs_a_reason_and_ends_review(agent, action):
    decision = _submit(agent, action, 5000)
    with pytest.raises(services.ApprovalRefused):
        services.decision_reject(decision=decision, reviewer=reviewer(), reason="  ")
    decision = services.decision_reject(
        decision=decision, reviewer=reviewer(), reason="Wrong IBAN", tags=["wrong recipient"]
    )
    assert decision.status == Decision.Status.REJECTED
    assert decision.reviews.get().tags == ["wrong recipient"]
    with pytest.raises(services.DecisionConflict, match="Already rejected by"):
        services.decision_approve(decision=decision, reviewer=reviewer())


def test_cancel_and_expire_only_from_pending(agent, action):
    decision = _submit(agent, action, 5000)
    decision = services.decision_cancel(decision=decision, agent=agent)
    assert decision.status == Decision.Status.CANCELLED
    with pytest.raises(services.DecisionConflict):
        services.decision_cancel(decision=decision, agent=agent)
    with pytest.raises(services.DecisionConflict):
        services.decision_expire(decision=decision)
    other = services.decision_expire(decision=_submit(agent, action, 5000))
    assert other.status == Decision.Status.EXPIRED


def test_release_transitions_never_go_backwards(agent, action):
    decision = _submit(agent, action, 10)
    decision = services.decision_release_claim(decision=decision)
    assert decision.status == Decision.Status.RELEASING
    assert decision.release_attempts == 1
    with pytest.raises(services.DecisionConflict):
        services.decision_release_claim(decision=decision)
    decision = services.decision_release_finish(
        decision=decision, succeeded=True, result={"status_code": 200}
    )
    assert decision.status == Decision.Status.RELEASED
    assert decision.released_at is not None
    with pytest.raises(services.DecisionConflict):
        services.decision_block(decision=decision, reason="late")
    blocked = services.decision_block(decision=_submit(agent, action, 10), reason="Key revoked")
    assert blocked.status == Decision.Status.BLOCKED
    assert blocked.status_reason == "Key revoked"


def test_every_transition_is_audited(agent, action):
    before = AuditEvent.objects.count()
    decision = _submit(agent, action, 10)
    services.decision_release_claim(decision=decision)
    services.decision_release_finish(decision=decision, succeeded=False, result={"error": "x"})
    assert AuditEvent.objects.count() == before + 3


def test_approve_refuses_params_that_changed_since_they_were_shown(agent, action):
    decision = _submit(agent, action, 5000)
    shown = services.params_fingerprint(decision.params)
    edited = {"amount": 4500, "to": "Acme"}
    services.decision_approve(decision=decision, reviewer=reviewer(), approved_params=edited)
    with pytest.raises(services.DecisionChanged):
        services.decision_approve(
            decision=decision, reviewer=reviewer(), expected_params_hash=shown
        )
    decision.refresh_from_db()
    assert decision.status == Decision.Status.PENDING
    assert decision.reviews.count() == 1
    decision = services.decision_approve(
        decision=decision,
        reviewer=reviewer(),
        expected_params_hash=services.params_fingerprint(edited),
    )
    assert decision.status == Decision.Status.APPROVED
    assert decision.approved_params == edited
