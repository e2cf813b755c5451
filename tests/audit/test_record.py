import pytest
from django.db import transaction

from audit.models import AuditEvent
from audit.services import AuditOutsideTransaction, audit_record
from tests.factories import AgentFactory, UserFactory


@pytest.mark.django_db(transaction=True)
def test_recording_outside_a_transaction_is_refused():
    with pytest.raises(AuditOutsideTransaction):
        audit_record(event="thing.happened")
    assert not AuditEvent.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_event_rolls_back_with_the_change_it_records():
    with pytest.raises(RuntimeError), transaction.atomic():
        audit_record(event="thing.happened")
        raise RuntimeError("the write failed")
    assert not AuditEvent.objects.exists()


@pytest.mark.django_db
def test_it_records_actor_and_target():
    user = UserFactory(username="rita")
    agent = AgentFactory(slug="bot")
    with transaction.atomic():
        by_user = audit_record(event="agent.changed", actor=user, target=agent, data={"n": 1})
        by_agent = audit_record(event="agent.did", actor=agent)
        by_system = audit_record(event="sweep", actor="apply_governance")
    assert (by_user.actor_kind, by_user.actor_label, by_user.actor_user) == ("user", "rita", user)
    assert (by_user.target_type, by_user.target_id) == ("agents.agent", str(agent.pk))
    assert (by_agent.actor_kind, by_agent.actor_label) == ("agent", "bot")
    assert (by_system.actor_kind, by_system.actor_label) == ("system", "apply_governance")
