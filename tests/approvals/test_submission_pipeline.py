"""The submission pipeline reads as one ordered list of steps."""

import pytest
from django.core.management import call_command

from approvals import services, tasks


def test_the_pipeline_runs_its_steps_in_the_documented_order():
    assert [name for name, _step in services.PIPELINE] == [
        "authenticate",
        "size",
        "shape",
        "grant",
        "suspension",
        "rate limit",
        "schema",
        "constraint",
        "anomalies",
        "policy",
        "create",
    ]


def test_the_transport_does_authentication_size_and_shape():
    transport = [name for name, step in services.PIPELINE if step is None]
    assert transport == ["authenticate", "size", "shape"]


@pytest.mark.django_db
def test_seeding_the_demo_enqueues_no_release(django_capture_on_commit_callbacks, monkeypatch):
    queued = []
    monkeypatch.setattr(tasks.release_decision, "delay", lambda *a: queued.append(a))
    with django_capture_on_commit_callbacks(execute=True):
        call_command("seed_demo", stdout=open("/dev/null", "w"))  # noqa: SIM115
    assert queued == []
