"""A reviewer's edit passes the same gate as the agent: schema, grant and constraint,
the anomaly rules that inspect params, and the policy of the decision's behaviour version.
Release re-checks the grant constraint on the params it releases."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.models import Agent, Alert, BehaviourVersion
from agents.services import grant_apply, grant_remove
from approvals import policy, scope, services, tasks
from approvals.models import Decision, Review
from audit.models import AuditEvent
from tests.approvals.edit_gate_world import IBAN, NEW_IBAN, build_world
from tests.factories import BehaviourVersionFactory, reviewer

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    return build_world()


def events(decision: Decision) -> list[str]:
    return list(
        AuditEvent.objects.filter(target_id=str(decision.pk))
        .order_by("id")
        .values_list("event", flat=True)
    )


def edit(decision: Decision, params: dict, *, by=None, comment: str = "") -> Decision:
    shown = services.effective_params(decision)
    return services.decision_approve(
        decision=decision,
        reviewer=by or reviewer(),
        comment=comment,
        approved_params=params,
        expected_params_hash=services.params_fingerprint(shown),
    )


def approve(decision: Decision, *, by=None) -> Decision:
    decision.refresh_from_db()
    return services.decision_approve(
        decision=decision,
        reviewer=by or reviewer(),
        expected_params_hash=services.params_fingerprint(services.effective_params(decision)),
    )


def assert_untouched(decision: Decision, *, before: dict) -> None:
    """Nothing but the refused attempt was recorded."""
    after = Decision.objects.get(pk=decision.pk)
    assert after.status == Decision.Status.PENDING
    assert after.approved_params is None
    assert (after.required_approvals, after.risk, after.policy_rule) == before["route"]
    assert not Review.objects.filter(decision=decision).exists()
    assert events(decision) == ["decision.submitted", "decision.edit_refused"]
    assert Alert.objects.count() == before["alerts"]
    assert Agent.objects.get(pk=decision.agent_id).status == Agent.Status.ACTIVE


def snapshot(decision: Decision) -> dict:
    return {
        "route": (decision.required_approvals, decision.risk, decision.policy_rule),
        "alerts": Alert.objects.count(),
    }


def test_a_refund_raised_past_the_grant_constraint_is_refused(world):
    decision = world.refund_of(480)
    before = snapshot(decision)
    with pytest.raises(services.EditRefused, match="params.amount <= 500") as refused:
        edit(decision, {"amount": 9999, "order": "A-1001"})
    assert refused.value.code == "out_of_scope"
    assert_untouched(decision, before=before)
    event = AuditEvent.objects.get(event="decision.edit_refused")
    assert event.data["params_after"] == {"amount": 9999, "order": "A-1001"}
    assert event.data["code"] == "out_of_scope"


def test_a_payment_raised_past_the_grant_cap_with_a_new_iban_is_refused(world):
    decision = world.payment_of(720)
    before = snapshot(decision)
    with pytest.raises(services.EditRefused, match="params.amount <= 50000"):
        edit(decision, {"amount": 900_000, "iban": NEW_IBAN})
    assert_untouched(decision, before=before)


def test_an_edit_that_breaks_the_schema_is_refused_with_the_reason(world):
    decision = world.payment_of(720)
    before = snapshot(decision)
    with pytest.raises(services.EditRefused, match=r"params\.iban") as refused:
        edit(decision, {"amount": 720, "iban": "not an iban"})
    assert refused.value.code == "invalid"
    assert_untouched(decision, before=before)


def test_an_email_to_a_domain_outside_the_grant_is_refused(world):
    decision = world.email_to("buyer@suppliers.example")
    before = snapshot(decision)
    with pytest.raises(services.EditRefused, match="grant constraint"):
        edit(decision, {"to": ["attacker@evil.example"], "subject": "Order", "body": "Hello"})
    assert_untouched(decision, before=before)


def test_an_email_to_a_domain_a_deny_rule_names_is_refused_naming_the_rule(world):
    decision = world.email_to("buyer@suppliers.example")
    before = snapshot(decision)
    with pytest.raises(services.EditRefused, match="never-email-rivals") as refused:
        edit(decision, {"to": ["ceo@rival.example"], "subject": "Order", "body": "Hello"})
    assert (refused.value.code, refused.value.rule) == ("denied", "never-email-rivals")
    assert_untouched(decision, before=before)
    assert AuditEvent.objects.get(event="decision.edit_refused").data["rule"] == (
        "never-email-rivals"
    )


def test_an_edit_after_the_grant_was_removed_is_refused(world):
    decision = world.refund_of(480)
    before = snapshot(decision)
    grant_remove(grant=world.agent.grants.get(action_type=world.refund))
    with pytest.raises(services.EditRefused, match="grant for refund.issue has been removed"):
        edit(decision, {"amount": 400, "order": "A-1001"})
    assert_untouched(decision, before=before)


def test_an_edit_that_policy_routes_to_two_approvers_is_a_proposal(world):
    decision = world.payment_of(720)
    assert (decision.required_approvals, decision.risk) == (1, "medium")
    editor = reviewer(username="erin")
    decision = edit(decision, {"amount": 5000, "iban": NEW_IBAN}, by=editor)
    assert decision.status == Decision.Status.PENDING
    assert decision.approved_params == {"amount": 5000, "iban": NEW_IBAN}
    assert decision.params == {"amount": 720, "iban": IBAN}
    assert (decision.required_approvals, decision.risk, decision.policy_rule) == (
        2,
        "high",
        "two-approvers-over-1000",
    )
    assert "Edited by erin" in decision.policy_explanation
    assert decision.reviews.get().verdict == Review.Verdict.EDIT_APPROVE
    assert events(decision) == ["decision.submitted", "decision.edit_proposed"]
    proposed = AuditEvent.objects.get(event="decision.edit_proposed").data
    assert proposed["before"] == {"rule": "payments", "risk": "medium", "required_approvals": 1}
    assert proposed["after"]["required_approvals"] == 2
    with pytest.raises(services.ReviewNotAllowed):
        approve(decision, by=editor)  # the editor's approval already counts as one
    decision = approve(decision)
    assert decision.status == Decision.Status.APPROVED
    assert decision.approved_params == {"amount": 5000, "iban": NEW_IBAN}


def test_approvals_given_to_the_old_params_no_longer_count(world):
    decision = world.payment_of(5000)
    assert decision.required_approvals == 2
    decision = approve(decision)
    decision = edit(decision, {"amount": 6000, "iban": NEW_IBAN})
    assert decision.status == Decision.Status.PENDING
    assert len(services.approvals_for_current_params(decision.reviews.all())) == 1
    decision = approve(decision)
    assert decision.status == Decision.Status.APPROVED
    assert decision.approved_params == {"amount": 6000, "iban": NEW_IBAN}


def test_an_edit_to_a_new_destination_raises_the_risk_and_is_a_proposal(world):
    decision = world.email_to("buyer@suppliers.example")
    assert (decision.required_approvals, decision.risk) == (1, "medium")
    decision = edit(decision, {"to": ["buyer@partners.example"], "subject": "Order", "body": "Hi"})
    assert decision.status == Decision.Status.PENDING
    assert (decision.required_approvals, decision.risk) == (2, "high")
    assert any(
        note["rule"] == "new_destination" and "partners.example" in note["message"]
        for note in decision.anomalies
    )
    decision = approve(decision)
    assert decision.status == Decision.Status.APPROVED


def test_an_edit_that_splits_a_payment_raises_the_risk_and_is_a_proposal(world):
    world.payment_of(400)
    decision = world.payment_of(300)
    assert decision.risk == "medium" and not decision.anomalies
    decision = edit(decision, {"amount": 900, "iban": IBAN})
    assert decision.status == Decision.Status.PENDING
    assert (decision.required_approvals, decision.risk) == (2, "high")
    assert "split transactions" in decision.anomalies[0]["message"]


def test_an_edit_does_not_count_its_own_old_amount_as_a_split(world):
    decision = world.payment_of(720)
    decision = edit(decision, {"amount": 950, "iban": IBAN})
    assert decision.status == Decision.Status.APPROVED
    assert decision.approved_params == {"amount": 950, "iban": IBAN}


def test_an_edit_is_routed_by_the_decisions_behaviour_version(world):
    decision = world.payment_of(720)
    stricter = [{"id": "no-payments", "action": "payment.transfer", "outcome": "deny"}]
    world.agent.active_behaviour = BehaviourVersionFactory(
        agent=world.agent, number=2, policy=stricter
    )
    world.agent.save()
    decision = edit(decision, {"amount": 800, "iban": IBAN})
    assert decision.status == Decision.Status.APPROVED
    assert decision.behaviour_version == 1


def test_an_edit_within_the_gate_is_approved_and_released_as_before(world):
    decision = world.refund_of(480)
    decision = edit(decision, {"amount": 450, "order": "A-1001"}, comment="Partial refund")
    assert decision.status == Decision.Status.APPROVED
    assert events(decision) == [
        "decision.submitted",
        "decision.review_added",
        "decision.approved",
    ]
    assert tasks.release_decision.run(str(decision.pk)) == Decision.Status.RELEASED


def test_release_blocks_params_outside_a_tightened_grant_constraint(world):
    decision = approve(world.refund_of(480))
    assert decision.status == Decision.Status.APPROVED
    grant_apply(agent=world.agent, action_type=world.refund, constraint="params.amount <= 100")
    assert tasks.release_decision.run(str(decision.pk)) == "blocked"
    decision.refresh_from_db()
    assert decision.status == Decision.Status.BLOCKED
    assert "params.amount <= 100" in decision.status_reason


def test_release_checks_the_params_actually_released(world):
    decision = approve(world.refund_of(480))
    # An approval recorded before edits were gated: the agent asked for 480, 9999 was approved.
    Decision.objects.filter(pk=decision.pk).update(
        approved_params={"amount": 9999, "order": "A-1001"}
    )
    decision.refresh_from_db()
    assert services.release_blocker(decision) is not None
    assert tasks.release_decision.run(str(decision.pk)) == "blocked"


# --- the property: what is released is inside the grant and approved as policy demands ----

PAYMENT_STEP = st.one_of(
    st.just(("approve", None)),
    st.tuples(
        st.just("edit"),
        st.fixed_dictionaries(
            {
                "amount": st.one_of(st.integers(-100, 120_000), st.sampled_from([500, 1000, 1001])),
                "iban": st.sampled_from([IBAN, NEW_IBAN, "nope"]),
            }
        ),
    ),
)
REFUND_STEP = st.one_of(
    st.just(("approve", None)),
    st.tuples(
        st.just("edit"),
        st.fixed_dictionaries(
            {"amount": st.integers(-10, 20_000), "order": st.sampled_from(["A-1001", "B-2"])}
        ),
    ),
)


def _approvers_of(decision: Decision, params: dict) -> set[int]:
    """Distinct reviewers who approved exactly these params, replayed from the reviews."""
    shown, approvers = decision.params, set()
    for review in decision.reviews.order_by("pk"):
        if review.verdict == Review.Verdict.REJECT:
            continue
        if review.verdict == Review.Verdict.EDIT_APPROVE:
            shown = review.params_after
        if shown == params:
            approvers.add(review.reviewer_id)
    return approvers


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    kind=st.sampled_from(["refund", "payment"]),
    amount=st.integers(1, 3000),
    data=st.data(),
)
def test_released_params_always_satisfy_the_grant_and_the_policys_approvals(
    world, kind, amount, data
):
    if kind == "refund":
        decision = world.refund_of(min(amount, 500))
        steps = data.draw(st.lists(REFUND_STEP, max_size=4))
    else:
        decision = world.payment_of(amount)
        steps = data.draw(st.lists(PAYMENT_STEP, max_size=4))
    for step, params in steps:
        decision.refresh_from_db()
        if not decision.is_pending:
            break
        try:
            if step == "approve":
                approve(decision)
            else:
                edit(decision, params)
        except services.EditRefused:
            pass
    decision.refresh_from_db()
    if decision.status == Decision.Status.APPROVED:
        tasks.release_decision.run(str(decision.pk))
        decision.refresh_from_db()
    if decision.status != Decision.Status.RELEASED:
        return
    released = services.effective_params(decision)
    grant = scope.grant_for(agent=decision.agent, action_key=decision.action_type.key)
    assert scope.check_constraint(
        agent=decision.agent,
        grant=grant,
        params=released,
        evidence=decision.evidence,
        confidence=decision.confidence,
    ).allowed
    version = BehaviourVersion.objects.get(agent=decision.agent, number=decision.behaviour_version)
    demanded = policy.route(
        version=version,
        agent=decision.agent,
        action_type=decision.action_type,
        params=released,
        evidence=decision.evidence,
        confidence=decision.confidence,
    )
    assert demanded.outcome != "deny"
    assert len(_approvers_of(decision, released)) >= demanded.approvals


# --- the inbox edit view ------------------------------------------------------------------


@pytest.fixture
def rita(client):
    user = reviewer(username="rita")
    client.force_login(user)
    return user


def post_edit(client, decision: Decision, **fields):
    shown = services.effective_params(decision)
    data = {f"p_{name}": value for name, value in fields.items()}
    return client.post(
        f"/inbox/{decision.pk}/edit/",
        {**data, "params_hash": services.params_fingerprint(shown)},
    )


def test_the_edit_view_refuses_an_edit_past_the_constraint_with_the_reason(client, world, rita):
    decision = world.refund_of(480)
    response = post_edit(client, decision, amount="9999", order="A-1001")
    assert response.status_code == 400
    html = response.content.decode()
    assert "params.amount &lt;= 500" in html
    assert 'id="edit-approve-button"' in html  # the form stays open with the reviewer's values
    assert events(decision) == ["decision.submitted", "decision.edit_refused"]
    assert not Review.objects.exists()


def test_the_edit_view_audits_an_edit_that_breaks_the_schema(client, world, rita):
    decision = world.payment_of(720)
    response = post_edit(client, decision, amount="720", iban="not an iban")
    assert response.status_code == 400
    assert events(decision) == ["decision.submitted", "decision.edit_refused"]
    refused = AuditEvent.objects.get(event="decision.edit_refused")
    assert refused.actor_user == rita
    assert refused.data["code"] == "invalid"
    assert refused.data["params_after"]["iban"] == "not an iban"


def test_the_detail_panel_says_earlier_approvals_no_longer_count(client, world, rita):
    decision = world.payment_of(5000)
    approve(decision, by=reviewer(username="amy"))
    decision.refresh_from_db()
    post_edit(client, decision, amount="6000", iban=NEW_IBAN)
    html = client.get(f"/inbox/{decision.pk}/").content.decode()
    assert "Approvals given to the earlier params no longer count" in html
    assert "given to earlier params; no longer counts" in html
    assert "1 of 2 approvals" in html


def test_an_edited_recipient_is_stored_and_released_in_canonical_form(world):
    decision = world.email_to("buyer@suppliers.example")
    approved = edit(
        decision, {"to": ["Sales@SUPPLIERS.example"], "subject": "Order", "body": "Hello"}
    )
    assert approved.approved_params["to"] == ["sales@suppliers.example"]


def test_an_edited_recipient_with_an_rfc_5322_comment_is_refused(world):
    decision = world.email_to("buyer@suppliers.example")
    before = snapshot(decision)
    with pytest.raises(services.EditRefused, match="bare email address"):
        edit(
            decision,
            {"to": ["attacker@evil.example (x@suppliers.example"], "subject": "O", "body": "H"},
        )
    assert_untouched(decision, before=before)
