import pytest

from agents.models import Outcome
from approvals import policy
from tests.factories import ActionTypeFactory, AgentFactory, BehaviourVersionFactory

pytestmark = pytest.mark.django_db


def _route(rules, *, params=None, evidence=None, confidence=None, action=None, **kw):
    agent = AgentFactory()
    action = action or ActionTypeFactory(key="payment.transfer", **kw)
    version = BehaviourVersionFactory(agent=agent, policy=rules)
    return policy.route(
        version=version,
        agent=agent,
        action_type=action,
        params=params or {},
        evidence=evidence or {},
        confidence=confidence,
    )


TWO_APPROVERS = {
    "id": "two-approvers-over-1000",
    "action": "payment.transfer",
    "when": "params.amount > 1000",
    "outcome": "review",
    "approvals": 2,
    "ttl": "4h",
    "risk": "high",
    "reason": "Transfers over 1000 need two approvers",
}


def test_first_matching_rule_wins():
    rules = [
        TWO_APPROVERS,
        {"id": "small", "action": "payment.transfer", "outcome": "allow", "reason": "Small"},
    ]
    route = _route(rules, params={"amount": 5000})
    assert route.outcome == Outcome.REVIEW
    assert route.rule == "two-approvers-over-1000"
    assert route.approvals == 2
    assert route.ttl.total_seconds() == 4 * 3600
    assert route.explanation == "Transfers over 1000 need two approvers"

    route = _route(rules, params={"amount": 10})
    assert route.outcome == Outcome.ALLOW
    assert route.rule == "small"


def test_rules_for_other_actions_are_skipped():
    rules = [{"id": "email-deny", "action": "email.send", "outcome": "deny"}]
    route = _route(rules, params={"amount": 1})
    assert route.rule == ""
    assert route.outcome == Outcome.REVIEW


def test_no_match_uses_the_action_types_default():
    route = _route([], default_outcome="deny")
    assert route.outcome == Outcome.DENY
    assert "default" in route.explanation


def test_allow_on_irreversible_is_never_auto_allowed():
    action = ActionTypeFactory(key="email.send", irreversible=True)
    route = _route([{"id": "yolo", "outcome": "allow"}], action=action)
    assert route.outcome == Outcome.REVIEW
    assert "never auto-allowed" in route.explanation


@pytest.mark.parametrize(
    "when",
    ["params.missing > 3", "params.amount / 0 > 1", "params.amount > 'x'", "params.amount"],
)
def test_an_evaluation_error_fails_closed_to_review_naming_the_rule(when):
    rules = [{"id": "fragile", "when": when, "outcome": "allow"}]
    route = _route(rules, params={"amount": 5})
    assert route.outcome == Outcome.REVIEW
    assert route.rule == "fragile"
    assert "fragile" in route.explanation


def test_variables_cover_evidence_confidence_agent_and_action():
    rules = [
        {
            "id": "all-vars",
            "when": "evidence.signal == 'reply' && confidence > 0.5 "
            "&& agent.slug.startsWith('agent-') && action.key == 'payment.transfer'",
            "outcome": "deny",
        }
    ]
    assert _route(rules, evidence={"signal": "reply"}, confidence=0.9).outcome == Outcome.DENY
    assert _route(rules, evidence={"signal": "x"}, confidence=0.9).outcome == Outcome.REVIEW


def test_risk_falls_back_to_the_action_type_then_irreversibility():
    assert _route([]).risk == "medium"
    irreversible = ActionTypeFactory(key="refund.issue", irreversible=True)
    assert _route([], action=irreversible).risk == "high"
    assert _route([], action=ActionTypeFactory(key="crm.update", risk="low")).risk == "low"


def test_each_version_is_compiled_once(monkeypatch):
    agent = AgentFactory()
    action = ActionTypeFactory(key="payment.transfer")
    version = BehaviourVersionFactory(agent=agent, policy=[TWO_APPROVERS])
    calls = []
    real = policy._compile_rule
    monkeypatch.setattr(policy, "_compile_rule", lambda raw: calls.append(raw) or real(raw))
    for amount in (10, 5000, 20):
        policy.route(
            version=version,
            agent=agent,
            action_type=action,
            params={"amount": amount},
            evidence={},
            confidence=None,
        )
    assert len(calls) == 1
