import io
import re

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from approvals.models import Decision
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def _seed(*args) -> str:
    out = io.StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def _logins(output: str) -> dict[str, str]:
    return dict(
        re.findall(r"^\s+(?:Reviewers|Agent admins|Auditors)\s+(\S+)\s+(\S+)$", output, re.M)
    )


def test_it_seeds_users_config_and_decisions_in_every_status(client):
    output = _seed()
    logins = _logins(output)
    assert set(logins) == {"reviewer", "agentadmin", "auditor"}
    assert User.objects.get(username="reviewer").check_password(logins["reviewer"])
    statuses = set(Decision.objects.values_list("status", flat=True))
    assert statuses == set(Decision.Status.values)
    assert 25 <= Decision.objects.count() <= 40
    assert set(Decision.objects.values_list("agent__slug", flat=True)) == {
        "sdr-agent",
        "support-agent",
        "finance-agent",
    }
    assert Decision.objects.filter(required_approvals=2, status="pending").exists()
    for decision in Decision.objects.all():
        assert decision.reasoning and decision.evidence
        assert AuditEvent.objects.filter(target_id=str(decision.pk)).exists()


def test_if_empty_keeps_the_data_and_prints_fresh_logins(client):
    _seed()
    count = Decision.objects.count()
    output = _seed("--if-empty")
    assert Decision.objects.count() == count
    logins = _logins(output)
    assert User.objects.get(username="auditor").check_password(logins["auditor"])
