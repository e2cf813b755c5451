"""Every posture check opens a finding for a weak configuration and resolves it once fixed."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from agents.models import AgentKey, Alert, Grant, SeenAddress
from agents.services import agent_key_issue, agent_key_revoke, alert_acknowledge, anomaly_rules_set
from aispm_site import roles
from approvals.models import Decision, Finding, Review
from approvals.posture import posture_run
from audit import siem
from audit.checkpoints import checkpoint_create
from audit.models import AuditEvent, AuditSinkCursor
from audit.services import audit_record, audit_seal
from tests.factories import (
    ActionTypeFactory,
    AgentFactory,
    BehaviourVersionFactory,
    DecisionFactory,
    GrantFactory,
    UserFactory,
    agent_admin,
    reviewer,
)

pytestmark = pytest.mark.django_db

MONEY_SCHEMA = {
    "type": "object",
    "properties": {"amount": {"type": "number"}, "beneficiary": {"type": "string"}},
}
SPLIT_RULE = {"rule": "split_transactions", "param": "amount", "threshold": 1000}


def open_findings(check_id: str, *, now=None) -> list[Finding]:
    posture_run(now=now, only={check_id})
    return list(Finding.objects.filter(check_id=check_id, status=Finding.Status.OPEN))


def resolved(check_id: str) -> list[Finding]:
    return list(Finding.objects.filter(check_id=check_id, status=Finding.Status.RESOLVED))


def with_policy(agent, policy, number=1):
    agent.active_behaviour = BehaviourVersionFactory(agent=agent, number=number, policy=policy)
    agent.save()
    return agent


def decisions(agent, action, count, **fields):
    return [DecisionFactory(agent=agent, action_type=action, **fields) for _ in range(count)]


# --- gates ---------------------------------------------------------------------------


def test_an_allow_rule_that_matches_everything_opens_until_something_is_reviewed():
    action = ActionTypeFactory(key="crm.update")
    agent = with_policy(
        AgentFactory(), [{"id": "crm-auto", "action": "crm.update", "outcome": "allow"}]
    )
    decisions(agent, action, 21, policy_outcome="allow", approval="auto", status="approved")

    [finding] = open_findings("gates.allow_always_true")
    assert finding.subject == f"{agent.slug}:crm.update"
    assert finding.evidence["allowed"] == 21
    assert finding.question == "prevent"

    decisions(agent, action, 1, policy_outcome="review")
    assert open_findings("gates.allow_always_true") == []
    assert len(resolved("gates.allow_always_true")) == 1


def test_a_rule_needing_more_approvers_than_exist_opens_until_a_reviewer_joins():
    owner = reviewer(username="owner")
    agent = with_policy(
        AgentFactory(owner=owner),
        [{"id": "two", "action": "thing.do", "outcome": "review", "approvals": 2}],
    )
    reviewer(username="r1")

    [finding] = open_findings("gates.approvals_unreachable")
    assert finding.evidence == {"rule": "two", "needed": 2, "reviewers": 1}

    reviewer(username="r2")
    assert open_findings("gates.approvals_unreachable") == []
    assert agent.findings.get().status == Finding.Status.RESOLVED


def test_a_queue_slower_than_its_ttl_opens_and_resolves_once_it_ages_out():
    agent, action = AgentFactory(), ActionTypeFactory()
    now = timezone.now()
    decisions(
        agent,
        action,
        5,
        status=Decision.Status.EXPIRED,
        created_at=now - timedelta(hours=3),
        expires_at=now - timedelta(hours=2),
    )

    [finding] = open_findings("gates.queue_expiring")
    assert finding.evidence["expired"] == 5 and finding.evidence["ttl_seconds"] == 3600

    assert open_findings("gates.queue_expiring", now=now + timedelta(days=31)) == []
    assert len(resolved("gates.queue_expiring")) == 1


# --- least privilege -------------------------------------------------------------------


def test_a_grant_unused_for_30_days_opens_until_the_agent_uses_it():
    grant = GrantFactory(created_at=timezone.now() - timedelta(days=31))

    [finding] = open_findings("privilege.grant_unused")
    assert finding.fix_url == f"/security/agents/{grant.agent.slug}/scopes/"

    decisions(grant.agent, grant.action_type, 1)
    assert open_findings("privilege.grant_unused") == []


def test_a_grant_on_money_without_a_constraint_opens_until_constrained():
    grant = GrantFactory(action_type=ActionTypeFactory(params_schema=MONEY_SCHEMA))
    GrantFactory()  # nothing sensitive in its schema

    [finding] = open_findings("privilege.grant_unconstrained")
    assert finding.evidence["params"] == ["amount", "beneficiary"]

    Grant.objects.filter(pk=grant.pk).update(constraint="params.amount <= 100.0")
    assert open_findings("privilege.grant_unconstrained") == []


def test_an_hourly_limit_far_above_the_peak_opens_until_lowered():
    grant = GrantFactory(limit_per_hour=None)
    decisions(grant.agent, grant.action_type, 50)

    [finding] = open_findings("privilege.limit_too_high")
    assert finding.evidence["peak"] == 50 and finding.evidence["limit"] is None

    Grant.objects.filter(pk=grant.pk).update(limit_per_hour=500)
    assert open_findings("privilege.limit_too_high") == []


# --- credentials -------------------------------------------------------------------------


def test_a_key_older_than_the_maximum_age_opens_until_revoked():
    agent = AgentFactory()
    key = agent_key_issue(agent=agent).key
    AgentKey.objects.filter(pk=key.pk).update(created_at=timezone.now() - timedelta(days=181))

    [finding] = open_findings("credentials.key_too_old")
    assert finding.subject == f"key:{key.pk}"

    agent_key_revoke(key=key)
    assert open_findings("credentials.key_too_old") == []


def test_a_key_unused_for_30_days_opens_until_used():
    key = agent_key_issue(agent=AgentFactory()).key
    AgentKey.objects.filter(pk=key.pk).update(created_at=timezone.now() - timedelta(days=40))

    assert len(open_findings("credentials.key_unused")) == 1

    AgentKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now())
    assert open_findings("credentials.key_unused") == []


def test_two_lasting_keys_open_until_one_is_revoked_but_a_rotation_overlap_does_not():
    agent = AgentFactory()
    first = agent_key_issue(agent=agent).key
    agent_key_issue(agent=agent)

    [finding] = open_findings("credentials.keys_overlap")
    assert finding.subject == agent.slug

    AgentKey.objects.filter(pk=first.pk).update(revoked_at=timezone.now() + timedelta(hours=2))
    assert open_findings("credentials.keys_overlap") == []
    agent_key_revoke(key=first)
    assert open_findings("credentials.keys_overlap") == []


@override_settings(AISPM_POSTURE_MAX_ADDRESSES=3)
def test_keys_used_from_many_addresses_open_until_the_addresses_are_few():
    agent = AgentFactory()
    for n in range(4):
        SeenAddress.objects.create(agent=agent, ip=f"192.0.2.{n + 1}")

    [finding] = open_findings("credentials.key_many_addresses")
    assert finding.evidence["addresses"] == 4

    SeenAddress.objects.filter(ip="192.0.2.4").delete()
    assert open_findings("credentials.key_many_addresses") == []


# --- detection ---------------------------------------------------------------------------


def test_an_agent_without_anomaly_rules_opens_until_it_has_one():
    agent = AgentFactory()

    [finding] = open_findings("detection.no_anomaly_rules")
    assert finding.agent == agent

    anomaly_rules_set(target=agent, rules=[{"rule": "out_of_scope", "threshold": 5}])
    assert open_findings("detection.no_anomaly_rules") == []


def test_an_action_with_amounts_and_no_split_rule_opens_until_one_watches_it():
    action = ActionTypeFactory(key="refund.issue", params_schema=MONEY_SCHEMA)
    ActionTypeFactory()

    [finding] = open_findings("detection.no_split_rule")
    assert finding.subject == "refund.issue"

    anomaly_rules_set(target=action, rules=[SPLIT_RULE])
    assert open_findings("detection.no_split_rule") == []


def test_an_agents_split_rule_for_the_action_counts_too():
    ActionTypeFactory(key="refund.issue", params_schema=MONEY_SCHEMA)
    AgentFactory(anomaly_rules=[{**SPLIT_RULE, "for_action": "refund.issue"}])

    assert open_findings("detection.no_split_rule") == []


# --- evidence ----------------------------------------------------------------------------


def _sealed_event():
    with transaction.atomic():
        audit_record(event="test.event", data={})
    audit_seal()


def test_an_unsigned_chain_opens_until_a_key_signs_fresh_checkpoints():
    [finding] = open_findings("evidence.chain_unanchored")
    assert finding.subject == "signing" and finding.question == "audit"

    key = bytes(range(32))  # an Ed25519 seed, as settings holds it
    with override_settings(AISPM_AUDIT_SIGNING_KEY=key, AISPM_AUDIT_CHECKPOINT_SECONDS=600):
        [stale] = open_findings("evidence.chain_unanchored")
        assert stale.subject == "checkpoint"

        _sealed_event()
        assert checkpoint_create(publish=False) is not None
        assert open_findings("evidence.chain_unanchored") == []
    assert len(resolved("evidence.chain_unanchored")) == 2


def test_a_lagging_sink_opens_until_it_catches_up():
    sink = "ocsf+https://siem.example/ingest"
    with override_settings(AISPM_AUDIT_SIEM_URLS=[sink]):
        _sealed_event()
        AuditSinkCursor.objects.create(
            sink=siem.sink_name(sink), last_seq=0, delivered_at=timezone.now() - timedelta(hours=1)
        )
        [finding] = open_findings("evidence.sink_lag")
        assert finding.subject == siem.sink_name(sink)

        head = (
            AuditEvent.objects.filter(seq__isnull=False)
            .order_by("-seq")
            .values_list("seq", flat=True)
            .first()
        )
        AuditSinkCursor.objects.filter(sink=siem.sink_name(sink)).update(
            last_seq=head, delivered_at=timezone.now()
        )
        assert open_findings("evidence.sink_lag") == []


def test_the_sink_check_finds_nothing_without_sinks():
    _sealed_event()
    assert open_findings("evidence.sink_lag") == []


def test_a_short_retention_opens_until_it_is_six_months():
    with override_settings(AISPM_AUDIT_RETENTION_DAYS=90):
        [finding] = open_findings("evidence.retention_short")
        assert finding.evidence == {"retention_days": 90, "minimum": 183}
    with override_settings(AISPM_AUDIT_RETENTION_DAYS=183):
        assert open_findings("evidence.retention_short") == []


def test_no_recent_verification_opens_until_audit_verify_succeeds():
    assert len(open_findings("evidence.verify_stale")) == 1

    call_command("audit_verify", "--workers", "1", stdout=None)
    assert open_findings("evidence.verify_stale") == []
    later = timezone.now() + timedelta(hours=26)
    assert len(open_findings("evidence.verify_stale", now=later)) == 1


# --- behaviour ---------------------------------------------------------------------------


def test_an_unacknowledged_regression_on_the_active_version_opens_until_acknowledged():
    agent = with_policy(AgentFactory(slug="sdr"), [], number=2)
    alert = Alert.objects.create(
        severity="high",
        kind="behaviour_regression",
        agent=agent,
        subject="sdr:v2",
        message="Worse.",
    )

    [finding] = open_findings("behaviour.regression_unacknowledged")
    assert finding.subject == "sdr:v2"

    alert_acknowledge(alert=alert, actor=agent_admin(), comment="Rolled forward a fix.")
    assert open_findings("behaviour.regression_unacknowledged") == []


def test_a_high_rejection_rate_opens_and_resolves_once_the_week_passes():
    agent, action = AgentFactory(), ActionTypeFactory()
    now = timezone.now()
    decisions(agent, action, 6, status="rejected", decided_at=now)
    decisions(agent, action, 4, status="approved", approval="human", decided_at=now)

    [finding] = open_findings("behaviour.rejection_rate")
    assert finding.evidence == {"rejected": 6, "reviewed": 10}

    assert open_findings("behaviour.rejection_rate", now=now + timedelta(days=8)) == []


def test_a_low_rejection_rate_opens_nothing():
    agent, action = AgentFactory(), ActionTypeFactory()
    decisions(agent, action, 2, status="rejected", decided_at=timezone.now())
    decisions(agent, action, 8, status="approved", approval="human", decided_at=timezone.now())

    assert open_findings("behaviour.rejection_rate") == []


def test_feedback_not_picked_up_for_a_week_opens_until_the_agent_calls_again():
    agent = AgentFactory()
    key = agent_key_issue(agent=agent).key
    decision = DecisionFactory(agent=agent, status="rejected")
    Review.objects.create(
        decision=decision,
        reviewer=reviewer(),
        verdict="reject",
        comment="Wrong customer.",
        created_at=timezone.now() - timedelta(days=8),
    )

    [finding] = open_findings("behaviour.feedback_unread")
    assert finding.agent == agent

    AgentKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now())
    assert open_findings("behaviour.feedback_unread") == []


# --- access ------------------------------------------------------------------------------


def test_local_passwords_beside_sso_open_until_local_login_is_off():
    assert open_findings("access.local_passwords_with_sso") == []
    with override_settings(OIDC_ISSUER="https://idp.invalid/"):
        assert len(open_findings("access.local_passwords_with_sso")) == 1
        with override_settings(AISPM_LOCAL_LOGIN=False):
            assert open_findings("access.local_passwords_with_sso") == []


@override_settings(AISPM_POSTURE_MAX_SUPERUSERS=2)
def test_too_many_superusers_open_until_one_steps_down():
    users = [UserFactory(is_superuser=True) for _ in range(3)]

    [finding] = open_findings("access.too_many_superusers")
    assert len(finding.evidence["superusers"]) == 3

    users[0].is_superuser = False
    users[0].save()
    assert open_findings("access.too_many_superusers") == []


def test_an_agent_admin_who_reviews_opens_a_warning_until_the_roles_are_split():
    both = UserFactory(groups=[roles.REVIEWERS, roles.AGENT_ADMINS])
    decision = DecisionFactory(status="approved")
    Review.objects.create(decision=decision, reviewer=both, verdict="approve")

    [finding] = open_findings("access.reviewer_is_admin")
    assert finding.severity == "low" and finding.evidence["user"] == both.username

    both.groups.remove(Group.objects.get(name=roles.AGENT_ADMINS))
    assert open_findings("access.reviewer_is_admin") == []
