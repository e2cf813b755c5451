"""The posture page and the four-question report: roles, content, PDF, hostile periods."""

import csv
import io
import re
from collections import Counter
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from pypdf import PdfReader

from approvals.models import Decision, Finding, Review
from approvals.posture import posture_run
from approvals.posture.report import CANARY_FIGURE
from audit.models import AuditEvent
from tests.factories import (
    ActionTypeFactory,
    AgentFactory,
    DecisionFactory,
    UserFactory,
    agent_admin,
    auditor,
    reviewer,
)

pytestmark = pytest.mark.django_db

PAGE, REPORT = "/posture/", "/posture/report/"
SECTIONS = [
    "How do you prevent bad decisions?",
    "How do you audit actions?",
    "How do you prevent compromise?",
    "How do you update behaviour?",
]


@pytest.fixture
def seeded():
    agent = AgentFactory(slug="sdr-agent")
    posture_run()
    return agent


@pytest.mark.parametrize("make_user", [agent_admin, auditor])
@pytest.mark.parametrize("url", [PAGE, REPORT])
def test_agent_admins_and_auditors_may_read_the_page_and_the_report(client, make_user, url):
    client.force_login(make_user())
    assert client.get(url).status_code == 200


def test_superusers_may_read_the_page(client):
    client.force_login(UserFactory(is_superuser=True))
    assert client.get(PAGE).status_code == 200


@pytest.mark.parametrize("url", [PAGE, REPORT, REPORT + "?format=pdf"])
def test_reviewers_and_users_without_a_role_get_403(client, url):
    for user in (reviewer(), UserFactory()):
        client.force_login(user)
        assert client.get(url).status_code == 403


@pytest.mark.parametrize("url", [PAGE, REPORT])
def test_anonymous_users_are_sent_to_log_in(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("url", [PAGE, REPORT])
def test_the_page_and_report_only_answer_get(client, url):
    client.force_login(auditor())
    assert client.post(url).status_code == 405


def test_the_page_shows_scores_formula_findings_with_fix_links_matrix_and_trend(client, seeded):
    client.force_login(agent_admin())
    html = client.get(PAGE).content.decode()

    for label in SECTIONS:
        assert label in html
    assert "critical 40, high 20, medium 10, low 5" in html
    finding = Finding.objects.get(check_id="detection.no_anomaly_rules")
    assert f'id="finding-{finding.pk}"' in html
    assert f'href="{finding.fix_url}"' in html and finding.fix_url == "/agents/sdr-agent/"
    assert 'data-control="anomaly"' in html and "sdr-agent" in html
    assert "<svg" in html and html.count("<polyline") == 4
    # The CSP forbids inline script and style: none of either.
    assert "<script>" not in html and " style=" not in html and "<style" not in html


def test_the_page_escapes_finding_text(client, db):
    AgentFactory(slug="x", name="<script>alert(1)</script>")
    Finding.objects.create(
        check_id="detection.no_anomaly_rules",
        subject="x",
        question="compromise",
        severity="high",
        title="t",
        message='<img src=x onerror="alert(1)">',
    )
    client.force_login(auditor())
    html = client.get(PAGE).content.decode()
    assert "<img src=x" not in html and "&lt;img src=x" in html


def test_the_html_report_has_four_sections_findings_and_the_seal(client, seeded):
    client.force_login(auditor())
    response = client.get(REPORT, {"from": "2026-01-01", "to": "2026-12-31"})
    html = response.content.decode()

    for label in SECTIONS:
        assert label in html
    assert "Open findings" in html and "detection.no_anomaly_rules" in html
    digest = re.search(r"data-digest>([0-9a-f]{64})<", html).group(1)
    event = AuditEvent.objects.get(event="posture.report_generated")
    assert event.data["sha256"] == digest and event.data["format"] == "html"
    assert event.actor_label == event.actor_user.username


def pdf_text(data: bytes) -> str:
    reader = PdfReader(io.BytesIO(data))
    return "\n".join(page.extract_text() for page in reader.pages)


def test_the_pdf_report_opens_and_carries_the_sections_figures_and_seal(client, seeded):
    agent = seeded
    action = ActionTypeFactory()
    for _ in range(3):
        DecisionFactory(agent=agent, action_type=action, status="expired")
    client.force_login(auditor())
    today = timezone.now().date()
    response = client.get(REPORT, {"from": str(today), "to": str(today), "format": "pdf"})

    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert f"aispm-posture-{today}-to-{today}.pdf" in response["Content-Disposition"]
    text = " ".join(pdf_text(response.content).split())
    for label in SECTIONS:
        assert label in text
    assert "Expired unreviewed 3" in text
    assert "Open findings" in text and "evidence.verify_stale" in text
    event = AuditEvent.objects.get(event="posture.report_generated")
    assert event.data["sha256"] in text.replace(" ", "")
    assert f"seq {event.data['chain_head_seq']}" in text


def test_posture_report_command_writes_the_pdf(tmp_path, seeded):
    out = tmp_path / "report.pdf"
    stdout = io.StringIO()
    call_command(
        "posture_report",
        "--from",
        "2026-01-01",
        "--to",
        "2026-12-31",
        "--out",
        str(out),
        stdout=stdout,
    )

    text = pdf_text(out.read_bytes())
    assert all(label in text.replace("\n", " ") for label in SECTIONS)
    digest = re.search(r"sha256 ([0-9a-f]{64})", stdout.getvalue()).group(1)
    assert AuditEvent.objects.get(event="posture.report_generated").data["sha256"] == digest


@pytest.mark.parametrize(
    "query",
    [
        {"from": "2026-01-01\x00"},
        {"to": "\x00"},
        {"from": "99999-01-01"},
        {"to": "+12026-01-01"},
        {"to": "9999-12-31"},
        {"from": "0001-01-01", "to": "2026-01-01"},
        {"from": "2026-02-01", "to": "2026-01-01"},
        {"from": "2026-13-45"},
        {"from": "x" * 1_000_000},
        {"to": "٢٠٢٦-٠١-٠١"},
    ],
)
def test_hostile_periods_get_400_not_500(client, query):
    client.force_login(auditor())
    response = client.get(REPORT, query)
    assert response.status_code == 400
    assert not AuditEvent.objects.filter(event="posture.report_generated").exists()


def test_a_raw_surrogate_in_the_query_string_gets_400(client):
    client.force_login(auditor())
    assert client.get(REPORT + "?from=%ED%A0%80&to=%00").status_code == 400


def csv_rows(client, query) -> list[dict]:
    response = client.get("/audit/export.csv", query)
    assert response.status_code == 200
    body = b"".join(response.streaming_content).decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(body)))


def test_the_reports_figures_agree_with_the_csv_export_for_the_same_period(client):
    agent, action = AgentFactory(), ActionTypeFactory()
    now = timezone.now()
    first, second = reviewer(), reviewer()
    spread = [
        ("released", "review", 3),
        ("approved", "allow", 4),
        ("denied", "deny", 2),
        ("rejected", "review", 2),
        ("expired", "review", 1),
        ("pending", "review", 5),
    ]
    for status, outcome, count in spread:
        for _ in range(count):
            DecisionFactory(agent=agent, action_type=action, status=status, policy_outcome=outcome)
    two = Decision.objects.filter(status="released")[:2]
    for decision in two:
        Decision.objects.filter(pk=decision.pk).update(approval="human", required_approvals=2)
        Review.objects.create(decision=decision, reviewer=first, verdict="approve")
        Review.objects.create(decision=decision, reviewer=second, verdict="approve")
    # Canaries test reviewers, not the agent: the CSV marks them, the report counts them
    # apart and leaves them out of every other figure.
    for status in ("pending", "rejected", "blocked"):
        DecisionFactory(agent=agent, action_type=action, status=status, canary=True)
    # Outside the period: neither the CSV nor the report counts them.
    DecisionFactory(agent=agent, action_type=action, created_at=now - timedelta(days=40))
    DecisionFactory(agent=agent, action_type=action, created_at=now + timedelta(days=2))

    client.force_login(UserFactory(is_superuser=True))
    period = {"from": str(now.date() - timedelta(days=6)), "to": str(now.date())}
    every_row = csv_rows(client, period)
    rows = [row for row in every_row if row["canary"] == "false"]
    html = client.get(REPORT, period).content.decode()

    def figure(label: str) -> int:
        match = re.search(
            rf"<th scope=\"row\">{re.escape(label)}</th><td class=\"mono\">(\d+)<", html
        )
        return int(match.group(1))

    outcomes = Counter(row["policy_outcome"] for row in rows)
    statuses = Counter(row["status"] for row in rows)
    two_person = sum(1 for row in rows if row["review_verdicts"].split(" | ").count("approve") >= 2)
    assert figure("Decisions") == len(rows) == 17
    assert figure("Routed to review") == outcomes["review"]
    assert figure("Allowed by policy") == outcomes["allow"]
    assert figure("Denied by policy") == outcomes["deny"]
    assert figure("Expired unreviewed") == statuses["expired"]
    assert figure("Rejected by reviewers") == statuses["rejected"]
    assert figure("Two-person decisions") == two_person == 2
    assert figure(CANARY_FIGURE) == len(every_row) - len(rows) == 3
    for value, label in Decision.Status.choices:
        assert f"<td>{label}</td><td>{statuses[value]}</td>" in html


def test_a_five_year_report_buckets_the_rejection_trend_by_30_days(client):
    client.force_login(auditor())
    response = client.get(REPORT, {"from": "2021-12-01", "to": "2026-11-30"})
    assert response.status_code == 200
    html = response.content.decode()
    rows = re.findall(r"<tr><td>(\d{4}-\d\d-\d\d)</td>", html)
    assert 60 <= len(rows) <= 62 and rows[0] == "2021-12-01"
