"""Celery tasks that moved between apps keep the names beat and queued messages use."""

from django.conf import settings

from agents import tasks as agent_tasks
from aispm_site.celery import app
from approvals import tasks as approval_tasks
from audit import tasks as audit_tasks


def test_moved_tasks_keep_their_old_names():
    assert agent_tasks.check_key_ages.name == "approvals.tasks.check_key_ages"
    assert audit_tasks.verify_audit_chain.name == "approvals.tasks.verify_audit_chain"
    assert approval_tasks.release_decision.name == "approvals.tasks.release_decision"
    assert audit_tasks.seal_audit_events.name == "audit.tasks.seal_audit_events"


def test_every_beat_entry_names_a_registered_task():
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert entry["task"] in app.tasks, entry["task"]
