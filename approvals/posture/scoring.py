"""One score per buyer question, from the open findings, by a formula the page shows."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Q

from ..models import Finding

WEIGHTS = {
    Finding.Severity.CRITICAL: 40,
    Finding.Severity.HIGH: 20,
    Finding.Severity.MEDIUM: 10,
    Finding.Severity.LOW: 5,
}
FORMULA = (
    "score = max(0, 100 − Σ weight of the question's open findings), with weights "
    "critical 40, high 20, medium 10, low 5"
)
SEVERITY_ORDER = ["critical", "high", "medium", "low"]


@dataclass(frozen=True)
class QuestionScore:
    question: str
    label: str
    score: int
    open: int
    by_severity: dict[str, int]


def score(findings) -> int:
    return max(0, 100 - sum(WEIGHTS.get(f.severity, 0) for f in findings))


def question_scores(findings: list[Finding]) -> list[QuestionScore]:
    scores = []
    for question, label in Finding.Question.choices:
        mine = [f for f in findings if f.question == question]
        scores.append(
            QuestionScore(
                question=question,
                label=label,
                score=score(mine),
                open=len(mine),
                by_severity={s: sum(1 for f in mine if f.severity == s) for s in SEVERITY_ORDER},
            )
        )
    return scores


def open_at(at: datetime):
    """Findings that were open at `at`."""
    return Finding.objects.filter(opened_at__lte=at).filter(
        Q(resolved_at__isnull=True) | Q(resolved_at__gt=at)
    )


def daily_scores(*, now: datetime, days: int = 30) -> dict[str, list[tuple[datetime, int]]]:
    """Each question's score at the end of each of the last `days` days (the last is now)."""
    start = now - timedelta(days=days - 1)
    findings = list(
        Finding.objects.filter(opened_at__lte=now).filter(
            Q(resolved_at__isnull=True) | Q(resolved_at__gt=start)
        )
    )
    series: dict[str, list] = {q: [] for q in Finding.Question.values}
    for day in range(days):
        at = start + timedelta(days=day)
        live = [
            f
            for f in findings
            if f.opened_at <= at and (f.resolved_at is None or f.resolved_at > at)
        ]
        for question in series:
            series[question].append((at, score([f for f in live if f.question == question])))
    return series
