"""Reads behind the posture page: open findings and the agents × controls matrix."""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Q

from agents.models import ActionType, Agent, AgentKey

from ..models import Finding, Review
from .common import WINDOW
from .scoring import SEVERITY_ORDER

CONTROLS = [
    ("gates", "Gates"),
    ("scopes", "Scopes"),
    ("keys", "Keys"),
    ("anomaly", "Anomaly rules"),
    ("behaviour", "Behaviour version"),
    ("feedback", "Feedback"),
]


def open_findings() -> list[Finding]:
    findings = Finding.objects.filter(status=Finding.Status.OPEN).select_related("agent")
    return sorted(findings, key=lambda f: (SEVERITY_ORDER.index(f.severity), f.check_id, f.subject))


def findings_by_severity(findings: list[Finding]) -> list[tuple[str, list[Finding]]]:
    groups = [(s, [f for f in findings if f.severity == s]) for s in SEVERITY_ORDER]
    return [(severity, group) for severity, group in groups if group]


@dataclass(frozen=True)
class Cell:
    control: str
    state: str  # ok | warn | missing
    text: str


@dataclass(frozen=True)
class MatrixRow:
    agent: Agent
    cells: list[Cell]


def _state(flagged: bool, present: bool) -> str:
    if not present:
        return "missing"
    return "warn" if flagged else "ok"


def control_matrix(*, findings: list[Finding], now: datetime) -> list[MatrixRow]:
    flagged = defaultdict(set)  # agent id -> areas with an open finding
    for finding in findings:
        if finding.agent_id:
            area = finding.check_id.split(".", 1)[0]
            if finding.check_id == "behaviour.feedback_unread":
                area = "feedback"
            flagged[finding.agent_id].add(area)
    live_keys = dict(
        AgentKey.objects.filter(Q(revoked_at__isnull=True) | Q(revoked_at__gt=now))
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .values("agent")
        .annotate(n=Count("id"))
        .values_list("agent", "n")
    )
    feedback = dict(
        Review.objects.filter(created_at__gte=now - WINDOW, decision__canary=False)
        .values("decision__agent")
        .annotate(n=Count("id"))
        .values_list("decision__agent", "n")
    )
    watched_actions = {
        pk for pk, rules in ActionType.objects.values_list("pk", "anomaly_rules") if rules
    }
    rows = []
    agents = Agent.objects.select_related("active_behaviour").prefetch_related("grants")
    for agent in agents.order_by("slug"):
        areas = flagged.get(agent.pk, set())
        policy = agent.active_behaviour.policy if agent.active_behaviour else []
        gates = sum(1 for r in policy if isinstance(r, dict) and r.get("outcome") != "allow")
        grants = list(agent.grants.all())
        keys = live_keys.get(agent.pk, 0)
        rules = len(agent.anomaly_rules or []) + sum(
            1 for grant in grants if grant.action_type_id in watched_actions
        )
        version = agent.active_behaviour
        reviews = feedback.get(agent.pk, 0)
        cells = [
            Cell(
                "gates",
                _state("gates" in areas, True),
                f"{gates} review/deny rule(s)" if gates else "default: review",
            ),
            Cell("scopes", _state("privilege" in areas, bool(grants)), f"{len(grants)} grant(s)"),
            Cell("keys", _state("credentials" in areas, bool(keys)), f"{keys} live key(s)"),
            Cell("anomaly", _state("detection" in areas, bool(rules)), f"{rules} rule(s)"),
            Cell(
                "behaviour",
                _state("behaviour" in areas, version is not None),
                f"v{version.number}" if version else "none",
            ),
            Cell(
                "feedback",
                "warn" if "feedback" in areas else "ok",
                f"{reviews} review(s) in 30 d",
            ),
        ]
        rows.append(MatrixRow(agent=agent, cells=cells))
    return rows
