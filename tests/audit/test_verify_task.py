"""The daily verification: seal, verify, record the run, and alert when it is broken."""

import pytest
from django.db import transaction

from agents.models import Alert
from audit import services, tasks
from audit.models import AuditEvent, AuditVerification
from tests.audit.test_chain import tamper

pytestmark = pytest.mark.django_db


def record(n: int) -> list[AuditEvent]:
    with transaction.atomic():
        return [services.audit_record(event="thing.happened", data={"n": i}) for i in range(n)]


def test_an_intact_chain_is_sealed_verified_and_recorded_without_an_alert():
    events = record(3)
    assert tasks.verify_audit_chain() is True
    assert not AuditEvent.objects.filter(pk__in=[e.pk for e in events], seq__isnull=True).exists()
    assert AuditVerification.objects.get().ok
    assert not Alert.objects.filter(kind="audit_chain_broken").exists()


def test_a_broken_chain_raises_a_critical_alert_naming_the_event():
    events = record(4)
    services.audit_seal_all()
    tamper("UPDATE audit_auditevent SET actor_label = 'mallory' WHERE id = %s", [events[2].pk])
    assert tasks.verify_audit_chain() is False
    alert = Alert.objects.get(kind="audit_chain_broken")
    assert alert.severity == "critical"
    assert alert.subject == str(events[2].pk)
    assert alert.evidence["first_broken_id"] == events[2].pk
    assert not AuditVerification.objects.get().ok


def test_seal_all_seals_every_committed_event_in_batches(monkeypatch):
    record(5)
    real = services.audit_seal
    monkeypatch.setattr(services, "audit_seal", lambda: real(limit=2))
    assert services.audit_seal_all() == 5
    assert not AuditEvent.objects.filter(seq__isnull=True).exists()
