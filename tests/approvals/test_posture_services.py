"""The posture services: findings open and resolve once each, audited; scores; the runners."""

import io

import pytest
from django.core.management import call_command
from django.db import IntegrityError
from django.utils import timezone

from approvals import tasks
from approvals.models import Finding
from approvals.posture import CHECKS, Hit, all_checks, finding_resolve, posture_run, scoring
from approvals.posture import registry as posture_registry
from audit.models import AuditEvent
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db

AREAS = {"gates", "privilege", "credentials", "detection", "evidence", "behaviour", "access"}


def test_the_registry_covers_every_area_with_a_question_and_severity_each():
    checks = all_checks()
    assert len(checks) >= 22
    assert {check.area for check in checks} == AREAS
    assert {check.question for check in checks} == set(Finding.Question.values)


def test_a_finding_opens_once_and_records_one_audit_event():
    agent = AgentFactory(slug="watched")
    first = posture_run(only={"detection.no_anomaly_rules"})
    again = posture_run(only={"detection.no_anomaly_rules"})

    assert (first.opened, again.opened) == (1, 0)
    finding = Finding.objects.get(check_id="detection.no_anomaly_rules")
    events = AuditEvent.objects.filter(event="finding.opened", target_id=str(finding.pk))
    assert events.count() == 1
    event = events.get()
    assert event.actor_label == "posture"
    assert event.data["subject"] == "watched" and event.data["severity"] == "medium"
    assert finding.agent == agent


def test_a_finding_resolves_once_with_an_audit_event_and_a_new_one_opens_if_it_recurs():
    agent = AgentFactory()
    posture_run(only={"detection.no_anomaly_rules"})
    agent.anomaly_rules = [{"rule": "new_ip"}]
    agent.save()
    assert posture_run(only={"detection.no_anomaly_rules"}).resolved == 1
    finding = Finding.objects.get()
    assert finding.status == "resolved" and finding.resolved_at is not None
    assert finding_resolve(finding=finding).resolved_at == finding.resolved_at
    assert AuditEvent.objects.filter(event="finding.resolved").count() == 1

    agent.anomaly_rules = []
    agent.save()
    posture_run(only={"detection.no_anomaly_rules"})
    assert Finding.objects.filter(status="open").count() == 1
    assert Finding.objects.count() == 2


def test_the_database_refuses_two_open_findings_for_one_subject():
    Finding.objects.create(check_id="x.y", subject="s", question="audit", severity="low", title="t")
    with pytest.raises(IntegrityError):
        Finding.objects.create(
            check_id="x.y", subject="s", question="audit", severity="low", title="t"
        )


def test_a_check_that_raises_leaves_its_findings_open_and_the_others_run(monkeypatch):
    AgentFactory()
    posture_run(only={"detection.no_anomaly_rules"})

    def broken(now):
        raise RuntimeError("boom")

    check = CHECKS["detection.no_anomaly_rules"]
    monkeypatch.setitem(
        posture_registry.CHECKS,
        check.id,
        posture_registry.Check(**{**check.__dict__, "run": broken}),
    )
    result = posture_run()

    assert result.failed == ("detection.no_anomaly_rules",)
    assert Finding.objects.get(check_id=check.id).status == "open"
    assert Finding.objects.filter(check_id="evidence.verify_stale", status="open").exists()


def test_a_hit_may_raise_its_checks_severity():
    check = CHECKS["gates.allow_always_true"]
    from approvals.posture import finding_open

    finding, created = finding_open(
        check=check, hit=Hit(subject="a:b", message="m", severity="critical")
    )
    assert created and finding.severity == "critical"


def test_posture_check_command_and_the_beat_task_run_every_check():
    out = io.StringIO()
    call_command("posture_check", stdout=out)
    assert "opened" in out.getvalue() and "open" in out.getvalue()
    open_now = Finding.objects.filter(status="open").count()
    assert open_now >= 2  # unsigned chain, never verified
    assert tasks.run_posture_checks() == open_now


def test_the_beat_schedule_runs_the_checks_every_15_minutes(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["posture-checks"]
    assert entry == {"task": "approvals.tasks.run_posture_checks", "schedule": 900.0}


def make(question, severity, **kw):
    return Finding(check_id="c", subject="s", question=question, severity=severity, title="t", **kw)


def test_a_score_is_100_less_the_weights_of_open_findings_never_below_zero():
    findings = [make("prevent", "high"), make("prevent", "low"), make("audit", "critical")]
    scores = {s.question: s for s in scoring.question_scores(findings)}
    assert scores["prevent"].score == 75
    assert scores["audit"].score == 60
    assert scores["update"].score == 100
    assert scoring.score([make("audit", "critical")] * 3) == 0
    assert "critical 40, high 20, medium 10, low 5" in scoring.FORMULA


def test_daily_scores_follow_when_findings_opened_and_resolved():
    now = timezone.now()
    finding = make("compromise", "high", opened_at=now - timezone.timedelta(days=10))
    finding.resolved_at = now - timezone.timedelta(days=5)
    finding.status = "resolved"
    finding.save()
    series = scoring.daily_scores(now=now, days=30)["compromise"]
    assert len(series) == 30
    assert series[-1][1] == 100  # resolved
    assert series[-8][1] == 80  # open seven days ago
    assert series[0][1] == 100  # not yet open


def test_the_demo_shows_a_few_findings_on_purpose():
    call_command("seed_demo", stdout=io.StringIO())

    checks = set(Finding.objects.filter(status="open").values_list("check_id", flat=True))
    assert {"gates.approvals_unreachable", "evidence.verify_stale"} <= checks
    assert len(checks) <= 5
