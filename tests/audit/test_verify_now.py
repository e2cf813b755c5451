"""Verify now on /audit/verification/: in-process on the embedded default, a Celery
task whose progress the page polls otherwise."""

import pytest

from audit.models import AuditEvent, AuditVerification
from tests.factories import DecisionFactory, agent_admin, auditor, reviewer

pytestmark = pytest.mark.django_db

URL = "/audit/verification/"
RUN = "/audit/verification/run/"


def test_an_auditor_verifies_now_in_process_on_the_embedded_default(client, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    DecisionFactory()
    client.force_login(auditor(username="audrey"))
    assert "Verify now" in client.get(URL).content.decode()

    response = client.post(RUN, follow=True)

    [verification] = AuditVerification.objects.all()
    assert verification.ok
    html = response.content.decode()
    assert f"Verified {verification.events_checked} events: intact." in html
    assert "Intact:" in html and 'data-verification="running"' not in html
    requested = AuditEvent.objects.get(event="audit.verification_requested")
    assert requested.actor_user.username == "audrey"


def test_with_a_broker_the_task_runs_and_the_page_polls_until_it_ends(
    client, settings, monkeypatch
):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    queued = []
    monkeypatch.setattr("audit.tasks.verify_audit_chain.delay", lambda *a, **k: queued.append(a))
    client.force_login(auditor(username="audrey"))

    html = client.post(RUN, follow=True).content.decode()

    assert queued == [()]
    assert 'data-verification="running"' in html
    assert 'hx-trigger="every 2s"' in html
    assert "Verify now</button>" not in html
    # The worker finishes; the polled fragment shows the result and stops polling.
    from audit import tasks

    tasks.verify_audit_chain()
    fragment = client.get(URL, headers={"HX-Request": "true"}).content.decode()
    assert fragment.lstrip().startswith('<section class="card" id="last-verification"')
    assert "Intact:" in fragment
    assert "every 2s" not in fragment


@pytest.mark.parametrize("make_user", [reviewer, agent_admin])
def test_only_auditors_may_verify_now(client, make_user):
    client.force_login(make_user(username="someone"))
    assert client.post(RUN).status_code == 403
    assert not AuditVerification.objects.exists()


def test_verify_now_is_post_only(client):
    client.force_login(auditor(username="audrey"))
    assert client.get(RUN).status_code == 405


def test_the_search_shows_the_exact_count_of_matches(client):
    DecisionFactory.create_batch(3, status="pending")
    DecisionFactory(status="rejected")
    client.force_login(auditor(username="audrey"))
    assert 'data-total="4">4 matches' in client.get("/audit/").content.decode()
    html = client.get("/audit/?status=rejected").content.decode()
    assert 'data-total="1">1 match<' in html


def test_the_search_count_stops_at_the_cap(client, monkeypatch):
    monkeypatch.setattr("audit.screens.selectors.COUNT_CAP", 2)
    DecisionFactory.create_batch(3)
    client.force_login(auditor(username="audrey"))
    assert 'data-total="2+">2+ matches' in client.get("/audit/").content.decode()
