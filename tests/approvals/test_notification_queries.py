"""What beat's sweep and the sends it enqueues cost the database, per decision.

The bound is the worker's cost in bench/README.md ("Notifications"): it sets how many
worker processes keep the queue flat at 100 decisions/s. It must not creep back up.
"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from approvals import services
from approvals.models import Notification
from approvals.notifications import preference_save
from approvals.notifications import tasks as notification_tasks
from tests.approvals.eager import eager_tasks  # noqa: F401 - autouse
from tests.factories import reviewer

RECIPIENTS = 5
DECISIONS = 4
QUERIES_PER_DECISION = 30


def _submit(agent, n):
    return services.decision_create(
        agent=agent,
        action_type=agent.grants.get(action_type__key="email.send").action_type,
        params={"to": ["lead@example.com"], "subject": f"Pricing {n}", "body": "Hi"},
        reasoning="The prospect asked.",
    )


@pytest.mark.django_db
def test_the_sweep_and_its_sends_stay_within_their_queries_per_decision(
    agent, mailoutbox, django_capture_on_commit_callbacks
):
    people = [reviewer(username=f"r{i}", email=f"r{i}@example.com") for i in range(RECIPIENTS)]
    for person in people:
        preference_save(
            actor=person, user=person, channel="email", mode="immediate", min_risk="low"
        )
    for n in range(DECISIONS):
        _submit(agent, n)
    with (
        CaptureQueriesContext(connection) as queries,
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert notification_tasks.notify_new_decisions() == DECISIONS
    sent = Notification.objects.filter(status=Notification.Status.SENT).count()
    assert sent == len(mailoutbox) == RECIPIENTS * DECISIONS
    per_decision = len(queries) / DECISIONS
    listing = "\n".join(q["sql"][:120] for q in queries.captured_queries)
    assert per_decision <= QUERIES_PER_DECISION, f"{per_decision} per decision:\n{listing}"
