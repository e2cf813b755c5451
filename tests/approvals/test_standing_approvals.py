"""Standing approvals: "Approve, and allow similar for ...", and how it cannot be abused."""

from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.models import Group, Permission
from django.utils import timezone

from approvals import canaries, services, standing
from approvals.models import Decision, StandingApproval
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
SCHEMA = {
    "type": "object",
    "required": ["vendor", "amount"],
    "properties": {"vendor": {"type": "string"}, "amount": {"type": "number"}},
}


@pytest.fixture
def world():
    agent = AgentFactory(slug="payer", owner=UserFactory(username="owner"))
    agent.active_behaviour = BehaviourVersionFactory(
        agent=agent,
        number=1,
        policy=[
            {"id": "deny-huge", "outcome": "deny", "when": "params.amount > 100000"},
            {"id": "two", "outcome": "review", "approvals": 2, "when": "params.amount > 5000"},
            {"id": "all", "outcome": "review", "risk": "medium"},
        ],
    )
    agent.save()
    action = ActionTypeFactory(
        key="invoice.pay", summary_template="Pay {vendor} {amount}", params_schema=SCHEMA
    )
    GrantFactory(agent=agent, action_type=action)
    return {"agent": agent, "action": action}


@pytest.fixture
def trusted():
    person = reviewer(username="trusted")
    standing.standing_permission_set(user=person, granted=True, actor=agent_admin())
    return type(person).objects.get(pk=person.pk)  # fresh permission cache


def _submit(world, vendor="Acme", amount=400):
    return services.decision_create(
        agent=world["agent"],
        action_type=world["action"],
        params={"vendor": vendor, "amount": amount},
        reasoning="Invoice due.",
    )


def _create(decision, person, condition=None, max_count=3, hours=24):
    return standing.standing_approval_create(
        decision=decision,
        reviewer=person,
        condition=condition or standing.condition_suggest(services.effective_params(decision)),
        max_count=max_count,
        ends_at=timezone.now() + timedelta(hours=hours),
    )


def test_the_suggested_condition_pins_strings_and_caps_numbers():
    assert (
        standing.condition_suggest({"vendor": "X", "amount": 500, "note": ["a"], "bad key": 1})
        == 'params.amount <= 500 && params.vendor == "X"'
    )


def test_matching_decisions_are_allowed_with_approval_standing_and_a_link(world, trusted):
    first = _submit(world)
    created = _create(first, trusted)
    first.refresh_from_db()
    assert first.status in services.APPROVED_STATES and first.approval == "human"
    second = _submit(world, amount=350)
    assert second.status in services.APPROVED_STATES
    assert second.approval == Decision.Approval.STANDING
    assert second.standing_approval == created
    assert str(created.pk) in second.policy_explanation
    created.refresh_from_db()
    assert created.used_count == 1
    assert AuditEvent.objects.filter(event="standing_approval.used").count() == 1
    # Not similar: another vendor, a bigger amount.
    assert _submit(world, vendor="Other").is_pending
    assert _submit(world, amount=450).is_pending


def test_it_stops_at_its_count_and_at_its_end(world, trusted):
    created = _create(_submit(world), trusted, max_count=2, hours=2)
    assert not _submit(world).is_pending
    assert not _submit(world).is_pending
    assert _submit(world).is_pending  # the count is used up
    created.max_count = 5
    StandingApproval.objects.filter(pk=created.pk).update(max_count=5)
    with time_machine.travel(timezone.now() + timedelta(hours=2, seconds=1)):
        assert _submit(world).is_pending  # ended


def test_revoking_takes_effect_at_once(client, world, trusted):
    created = _create(_submit(world), trusted)
    client.force_login(agent_admin())
    assert client.get(f"/agents/{world['agent'].slug}/standing/").status_code == 200
    response = client.post(f"/agents/{world['agent'].slug}/standing/{created.pk}/revoke/")
    assert response.status_code == 302
    assert _submit(world).is_pending
    assert AuditEvent.objects.filter(event="standing_approval.revoked").count() == 1


def test_it_is_refused_on_irreversible_actions_at_high_risk(world, trusted):
    world["action"].irreversible = True
    world["action"].save()
    version = world["agent"].active_behaviour
    version.policy = [{"id": "all", "outcome": "review", "risk": "high"}]
    type(version).objects.filter(pk=version.pk).update(policy=version.policy)
    decision = _submit(world)
    with pytest.raises(standing.StandingRefused, match="irreversible"):
        _create(decision, trusted)
    # Nor does an existing one (made while the action was reversible) ever match it.
    StandingApproval.objects.create(
        agent=world["agent"],
        action_type=world["action"],
        condition="params.amount <= 1000",
        max_count=5,
        ends_at=timezone.now() + timedelta(days=1),
        created_by=trusted,
    )
    assert _submit(world).is_pending


def test_it_never_skips_a_deny_rule_or_a_second_approver(world, trusted):
    _create(_submit(world), trusted, condition='params.vendor == "Acme" && params.amount > 0')
    assert _submit(world, amount=200000).status == Decision.Status.DENIED
    assert _submit(world, amount=6000).is_pending  # that rule needs two people


@pytest.mark.parametrize(
    "condition",
    [
        'params.vendor == "Acme" || true',
        "true",
        '!(params.vendor == "Other")',
        "params.amount <= 500 && (true ? true : false)",
        'params.vendor == "Someone else"',  # does not match the decision in hand
        "params.amount <=",
    ],
)
def test_a_reviewer_cannot_widen_a_standing_approval(world, trusted, condition):
    decision = _submit(world)
    with pytest.raises(standing.StandingRefused):
        _create(decision, trusted, condition=condition)
    assert not StandingApproval.objects.exists()
    decision.refresh_from_db()
    assert decision.is_pending


def test_it_lasts_at_most_seven_days_and_a_bounded_count(world, trusted):
    decision = _submit(world)
    with pytest.raises(standing.StandingRefused):
        _create(decision, trusted, hours=7 * 24 + 1)
    with pytest.raises(standing.StandingRefused):
        _create(decision, trusted, max_count=standing.MAX_COUNT + 1)


def test_without_the_permission_or_for_ones_own_agent_it_is_refused(client, world, trusted):
    decision = _submit(world)
    plain = reviewer(username="plain")
    with pytest.raises(standing.StandingRefused):
        _create(decision, plain)
    client.force_login(plain)
    assert client.get(f"/inbox/{decision.pk}/allow-similar/").status_code == 403
    owner = world["agent"].owner
    owner.groups.add(Group.objects.get(name="Reviewers"))
    owner.user_permissions.add(Permission.objects.get(codename="grant_standing_approval"))
    owner = type(owner).objects.get(pk=owner.pk)
    with pytest.raises(standing.StandingRefused, match="own"):
        _create(decision, owner)


def test_the_inbox_page_creates_one_from_the_suggestion(client, world, trusted):
    decision = _submit(world)
    client.force_login(trusted)
    page = client.get(f"/inbox/{decision.pk}/allow-similar/").content.decode()
    assert "params.amount &lt;= 400" in page
    response = client.post(
        f"/inbox/{decision.pk}/allow-similar/",
        {
            "condition": 'params.vendor == "Acme" && params.amount <= 400',
            "max_count": 5,
            "hours": 48,
        },
    )
    assert response.status_code == 302
    created = StandingApproval.objects.get()
    assert (created.max_count, created.created_by) == (5, trusted)
    assert AuditEvent.objects.filter(event="standing_approval.created").count() == 1


def test_agent_admins_grant_the_permission_and_others_cannot(client, world):
    person = reviewer(username="candidate")
    client.force_login(auditor())
    assert (
        client.post(
            "/agents/standing-approvers/", {"username": "candidate", "granted": "on"}
        ).status_code
        == 403
    )
    client.force_login(person)
    assert (
        client.post(
            "/agents/standing-approvers/", {"username": "candidate", "granted": "on"}
        ).status_code
        == 403
    )
    client.force_login(agent_admin())
    response = client.post(
        "/agents/standing-approvers/", {"username": "candidate", "granted": "on"}
    )
    assert response.status_code == 302
    assert type(person).objects.get(pk=person.pk).has_perm(standing.PERMISSION)
    assert AuditEvent.objects.filter(event="standing_approval.permission_granted").count() == 1


def test_reviewers_cannot_revoke_through_the_admin_screen(client, world, trusted):
    created = _create(_submit(world), trusted)
    client.force_login(trusted)
    assert (
        client.post(f"/agents/{world['agent'].slug}/standing/{created.pk}/revoke/").status_code
        == 403
    )
    created.refresh_from_db()
    assert created.revoked_at is None


def test_a_canary_is_never_released_by_a_standing_approval(
    world, trusted, django_capture_on_commit_callbacks
):
    template = canaries.canary_template_save(
        actor=agent_admin(),
        agent=world["agent"],
        action_type=world["action"],
        params={"vendor": "Acme", "amount": 300},
        reasoning="r",
    )
    _create(_submit(world), trusted)
    canary = canaries.canary_insert(template=template)
    assert canary.is_pending  # canaries never pass through the standing step
    # And a standing approval made from a canary never opens the trap to real requests.
    with django_capture_on_commit_callbacks(execute=True):
        created = _create(canaries.canary_insert(template=template), trusted)
    assert created.revoked_at is not None
    canary_made = Decision.objects.get(pk=created.from_decision_id)
    assert canary_made.status == Decision.Status.BLOCKED


def test_the_agent_api_shows_approval_standing_and_the_link(world, trusted):
    from rest_framework.test import APIClient

    from agents.services import agent_key_issue

    created = _create(_submit(world), trusted)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {agent_key_issue(agent=world['agent']).secret}")
    response = api.post(
        "/api/v1/decisions/",
        {"action": "invoice.pay", "params": {"vendor": "Acme", "amount": 100}, "reasoning": "r"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["approval"] == "standing"
    assert body["standing_approval"] == str(created.pk)


def test_it_never_stands_in_for_a_passkey_step_up(world, trusted, settings):
    _create(_submit(world), trusted, condition='params.vendor == "Acme" && params.amount > 0')
    agent = world["agent"]
    agent.active_behaviour = BehaviourVersionFactory(
        agent=agent,
        number=2,
        policy=[{"id": "all", "outcome": "review", "risk": "medium", "step_up": "passkey"}],
    )
    agent.save()
    assert _submit(world, amount=10).is_pending
    agent.active_behaviour = BehaviourVersionFactory(
        agent=agent, number=3, policy=[{"id": "all", "outcome": "review", "risk": "medium"}]
    )
    agent.save()
    settings.AISPM_STEP_UP_DEFAULT_RISK = "medium"
    assert _submit(world, amount=10).is_pending
    settings.AISPM_STEP_UP_DEFAULT_RISK = ""
    assert not _submit(world, amount=10).is_pending
