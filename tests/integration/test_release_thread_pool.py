"""Releases on a worker with a thread pool, on its own queue (AISPM_RELEASE_QUEUE).

A release waits on PostgreSQL and on the receiver; a thread pool overlaps those waits
(issue 14). The guarantees are the prefork worker's: each decision delivered once in
the ordinary case, audited, and a worker killed mid-release recovered by the sweeper
under the same webhook-id.
"""

import time
from datetime import timedelta

import pytest

from aispm_site.celery import app as celery_app
from approvals import tasks
from approvals.models import Decision, ReleaseAttempt
from audit.models import AuditEvent
from tests.factories import payer_world

from .conftest import LEASE_SECONDS, wait_for
from .test_release_worker import SECRET, approve, finished, pending

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(120),
]
QUEUE = "release-itest"
ROUTED = {"AISPM_RELEASE_QUEUE": QUEUE}


@pytest.fixture
def world(receiver):
    return payer_world(url=receiver.url, secret=SECRET)


def _route(routes) -> str:
    """Publish with `routes` from now on; return where a release goes now."""
    celery_app.conf.task_routes = routes
    celery_app.amqp.flush_routes()
    vars(celery_app.amqp).pop("router", None)  # the cached router holds the old table
    return celery_app.amqp.router.route({}, tasks.release_decision.name)["queue"].name


@pytest.fixture(autouse=True)
def routed_here():
    """This process publishes the releases it enqueues to QUEUE, as with the setting."""
    saved = celery_app.conf.task_routes
    assert (
        _route(
            {
                "approvals.tasks.release_decision": {"queue": QUEUE},
                "approvals.tasks.notify_agent": {"queue": QUEUE},
            }
        )
        == QUEUE
    )
    yield
    assert _route(saved) == "celery"


def test_a_thread_pool_worker_releases_each_decision_once_with_its_audit_trail(
    world, receiver, celery
):
    celery.worker(pool="threads", concurrency=8, queues=QUEUE, **ROUTED)
    decisions = [approve(pending(world, {"what": f"pay {n}"})) for n in range(40)]

    def all_done():
        return not Decision.objects.filter(
            pk__in=[d.pk for d in decisions],
            status__in=[Decision.Status.APPROVED, Decision.Status.RELEASING],
        ).exists()

    wait_for(all_done, timeout=60, what="40 releases", interval=0.1, details=celery.logs)
    time.sleep(0.5)  # room for a duplicate to show up
    ids = sorted(r.headers["webhook-id"] for r in receiver.requests)
    assert ids == sorted(str(d.pk) for d in decisions)
    rows = Decision.objects.filter(pk__in=[d.pk for d in decisions])
    assert set(rows.values_list("status", flat=True)) == {Decision.Status.RELEASED}
    assert set(rows.values_list("release_attempts", flat=True)) == {1}
    assert ReleaseAttempt.objects.filter(decision__in=decisions).count() == 40
    for decision in decisions:
        events = AuditEvent.objects.filter(target_id=str(decision.pk)).order_by("id")
        assert list(events.values_list("event", flat=True))[-3:] == [
            "decision.release_started",
            "decision.release_attempted",
            "decision.released",
        ]


def test_a_thread_pool_worker_killed_mid_release_is_recovered_under_the_same_webhook_id(
    world, receiver, celery
):
    receiver.script = [(200, 4.0)]  # the first delivery hangs long enough to kill the worker
    celery.beat(**ROUTED)
    celery.worker(**ROUTED)  # the default queue: the sweeper runs here
    doomed = celery.worker(pool="threads", concurrency=4, queues=QUEUE, **ROUTED)
    decision = approve(pending(world))

    wait_for(lambda: receiver.requests, timeout=20, what="the first delivery", details=celery.logs)
    decision.refresh_from_db()
    assert decision.status == Decision.Status.RELEASING
    first_lease_until = decision.release_lease_until
    doomed.kill()
    celery.worker(pool="threads", concurrency=4, queues=QUEUE, **ROUTED)

    decision = finished(decision, celery, timeout=LEASE_SECONDS + 20)

    assert decision.status == Decision.Status.RELEASED, decision.status_reason
    ids = [r.headers["webhook-id"] for r in receiver.requests]
    assert ids == [str(decision.pk)] * 2
    assert decision.release_attempts == 2
    assert list(
        ReleaseAttempt.objects.filter(decision=decision).values_list("number", "succeeded")
    ) == [(2, True)]
    assert decision.released_at <= first_lease_until + timedelta(seconds=5)
