import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from approvals import services, tasks
from approvals.models import Decision, ReleaseAttempt
from audit.models import AuditEvent
from tests.factories import ActionTypeFactory, AgentFactory, GrantFactory, reviewer


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_approval_racing_the_expiry_never_releases_an_expired_decision():
    agent = AgentFactory(slug="racer")
    action = ActionTypeFactory(key="refund.issue", connector_type="none")
    GrantFactory(agent=agent, action_type=action)
    outcomes = []
    for attempt in range(12):
        decision = services.decision_create(
            agent=agent, action_type=action, params={"what": f"r{attempt}"}, reasoning="r"
        )
        # Expire in a moment, so the approval and the sweep meet at the deadline.
        deadline = timezone.now() + timedelta(milliseconds=30 + 5 * attempt)
        Decision.objects.filter(pk=decision.pk).update(expires_at=deadline)
        person = reviewer(username=f"r{attempt}")
        barrier = threading.Barrier(2)

        offset = timedelta(milliseconds=(attempt % 6 - 4) * 8)

        def approve(decision=decision, person=person, barrier=barrier, at=deadline + offset):
            barrier.wait()
            # Approve a few milliseconds either side of the deadline.
            time.sleep(max((at - timezone.now()).total_seconds(), 0))
            try:
                services.decision_approve(decision=decision, reviewer=person)
            except services.DecisionConflict:
                pass
            finally:
                connection.close()

        def sweep(barrier=barrier, deadline=deadline):
            barrier.wait()
            try:
                while timezone.now() < deadline + timedelta(milliseconds=50):
                    tasks.expire_pending_decisions.run()
            finally:
                connection.close()

        threads = [threading.Thread(target=approve), threading.Thread(target=sweep)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        decision.refresh_from_db()
        outcomes.append(decision.status)
        events = set(
            AuditEvent.objects.filter(target_id=str(decision.pk)).values_list("event", flat=True)
        )
        # Never both: an expired decision was not approved, and is never released.
        assert not {"decision.expired", "decision.approved"} <= events
        if decision.status == Decision.Status.EXPIRED:
            assert decision.approval == ""
            assert not ReleaseAttempt.objects.filter(decision=decision).exists()
        else:
            assert decision.status in services.APPROVED_STATES
        tasks.sweep_releases.run()
        decision.refresh_from_db()
        if outcomes[-1] == Decision.Status.EXPIRED:
            assert decision.status == Decision.Status.EXPIRED
    assert set(outcomes) <= {Decision.Status.EXPIRED, *services.APPROVED_STATES}
