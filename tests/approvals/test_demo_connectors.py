"""The demo's payments succeed, and one clearly labelled connector fails on purpose."""

import io

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from agents.models import ActionType, Alert
from approvals.models import Decision
from approvals.services import decision_approve, decision_release

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo():
    call_command("seed_demo", stdout=io.StringIO())
    return User.objects.get(username="reviewer")


def _approve(decision, people, capture):
    """Approve with as many distinct reviewers as the decision needs, then release it
    (eagerly after commit without a broker, here with one)."""
    for person in people[: decision.required_approvals]:
        with capture(execute=True):
            decision_approve(decision=decision, reviewer=person)
        decision.refresh_from_db()
        if decision.status != Decision.Status.PENDING:
            break
    if decision.status == Decision.Status.APPROVED:
        # With a broker the release task waits in the queue: run the release here.
        decision_release(decision_id=str(decision.pk))
        decision.refresh_from_db()
    return decision


def test_an_approved_demo_payment_is_released(demo, django_capture_on_commit_callbacks):
    from tests.factories import reviewer

    people = [demo, reviewer(username="second"), reviewer(username="third")]
    pending = Decision.objects.filter(
        action_type__key="payment.transfer", status=Decision.Status.PENDING
    ).first()
    decision = _approve(pending, people, django_capture_on_commit_callbacks)
    assert decision.status == Decision.Status.RELEASED
    assert not Alert.objects.filter(kind__icontains="release").exists()


def test_the_failing_demo_connector_is_labelled_and_fails(demo, django_capture_on_commit_callbacks):
    ledger = ActionType.objects.get(key="ledger.export")
    assert "fails on purpose" in ledger.name
    decision = Decision.objects.get(action_type=ledger, status=Decision.Status.PENDING)
    decision = _approve(decision, [demo], django_capture_on_commit_callbacks)
    assert decision.status == Decision.Status.FAILED
