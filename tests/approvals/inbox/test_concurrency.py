import threading

import pytest
from django.db import connection
from django.test import Client

from approvals import services
from approvals.models import Decision, Review
from tests.factories import ActionTypeFactory, AgentFactory, reviewer


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_reviewers_at_once_one_wins_and_the_other_is_told_who():
    agent = AgentFactory(slug="racer")
    action = ActionTypeFactory(key="refund.issue")
    for attempt in range(5):
        decision = services.decision_create(
            agent=agent, action_type=action, params={"what": f"refund {attempt}"}, reasoning="r"
        )
        alice, bob = reviewer(username=f"alice{attempt}"), reviewer(username=f"bob{attempt}")
        barrier = threading.Barrier(2)
        results = {}

        def act(user, path, data, barrier=barrier, results=results):
            client = Client()
            client.force_login(user)
            barrier.wait()
            try:
                response = client.post(path, data, headers={"HX-Request": "true"})
                results[user.username] = (response.status_code, response.content.decode())
            finally:
                connection.close()

        threads = [
            threading.Thread(
                target=act,
                args=(
                    alice,
                    f"/inbox/{decision.pk}/approve/",
                    {"params_hash": services.params_fingerprint(decision.params)},
                ),
            ),
            threading.Thread(
                target=act, args=(bob, f"/inbox/{decision.pk}/reject/", {"reason": "No"})
            ),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        decision.refresh_from_db()
        [review] = Review.objects.filter(decision=decision)
        # An approval may already have moved on to release (blocked here: no grant).
        assert decision.status != Decision.Status.PENDING
        winner = decision.decided_by.username
        assert review.reviewer.username == winner
        loser = bob.username if winner == alice.username else alice.username
        assert {code for code, _ in results.values()} == {200}
        verb = "rejected" if review.verdict == Review.Verdict.REJECT else "approved"
        assert f"Already {verb} by {winner}." in results[loser][1]
