import threading

import pytest
from django.db import connection
from rest_framework.test import APIClient

from approvals.models import Decision

URL = "/api/v1/decisions/"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_submissions_with_one_key_create_one_decision(agent_key, email_body):
    body = dict(email_body, idempotency_key="race-1")
    barrier = threading.Barrier(4)
    statuses, ids = [], []

    def submit():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {agent_key}")
        barrier.wait()
        try:
            response = client.post(URL, body, format="json")
            statuses.append(response.status_code)
            ids.append(response.json()["id"])
        finally:
            connection.close()

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 200, 200, 201]
    assert len(set(ids)) == 1
    assert Decision.objects.filter(idempotency_key="race-1").count() == 1
