"""The figures of the four-question report, read live for a period of whole UTC days.

The period is `date_from` to `date_to` inclusive, the same days the auditor's CSV export
covers for the same from/to, so that the two agree row for row.
"""

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from statistics import median

from django.db.models import Count, Q

from agents.models import Agent, AgentKey, Alert, BehaviourVersion
from audit.models import AuditEvent
from audit.selectors import chain_head

from ..models import Decision, Finding, Review
from .evidence import last_verification, latest_checkpoint
from .scoring import SEVERITY_ORDER

MAX_DAYS = 366 * 5
CANARY_FIGURE = "Canary decisions (reviewer tests, not counted above)"


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def period_bounds(date_from: date, date_to: date) -> tuple[datetime, datetime]:
    return day_start(date_from), day_start(date_to) + timedelta(days=1)


@dataclass
class Section:
    question: str
    title: str
    answer: str
    figures: list[tuple[str, object]] = field(default_factory=list)
    table_head: list[str] = field(default_factory=list)
    table: list[list] = field(default_factory=list)


@dataclass
class Report:
    date_from: date
    date_to: date
    generated_at: datetime
    sections: list[Section]
    decisions: int
    by_status: dict[str, int]
    findings: list[Finding]
    head_seq: int | None
    head_hash: str
    checkpoint: object


def _hours(seconds: float | None) -> str:
    if seconds is None:
        return "none decided"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _prevent(decisions, canaries: int) -> Section:
    outcomes = dict(decisions.values_list("policy_outcome").annotate(n=Count("id")))
    statuses = dict(decisions.values_list("status").annotate(n=Count("id")))
    auto = decisions.filter(approval=Decision.Approval.AUTO).count()
    human = decisions.filter(approval=Decision.Approval.HUMAN).count()
    two_person = (
        decisions.filter(approval=Decision.Approval.HUMAN)
        .annotate(approvals=Count("reviews", filter=~Q(reviews__verdict="reject")))
        .filter(approvals__gte=2)
        .count()
    )
    waits = [
        (decided - created).total_seconds()
        for created, decided in decisions.filter(policy_outcome="review", decided_at__isnull=False)
        .exclude(status=Decision.Status.EXPIRED)
        .values_list("created_at", "decided_at")[:20000]
    ]
    rules = {"allow": 0, "review": 0, "deny": 0}
    for version in BehaviourVersion.objects.filter(pk__in=Agent.objects.values("active_behaviour")):
        for rule in version.policy or []:
            if isinstance(rule, dict) and rule.get("outcome") in rules:
                rules[rule["outcome"]] += 1
    total = decisions.count()
    expired = statuses.get(Decision.Status.EXPIRED, 0)
    return Section(
        question="prevent",
        title=Finding.Question.PREVENT.label,
        answer=(
            "Every action an agent proposes passes its scopes and its policy first. "
            f"Active policies hold {rules['review']} review, {rules['deny']} deny and "
            f"{rules['allow']} allow rules; irreversible actions are never auto-allowed. "
            f"In this period {total} decisions were made: {human} by human reviewers, "
            f"{auto} allowed by policy, {outcomes.get('deny', 0)} denied by policy, and "
            f"{expired} expired unreviewed and were never released."
            + (
                f" {canaries} canary decisions tested reviewers' attention; they are not "
                "counted above, and no canary is ever released."
                if canaries
                else ""
            )
        ),
        figures=[
            (
                "Gates (review / deny / allow rules)",
                f"{rules['review']} / {rules['deny']} / {rules['allow']}",
            ),
            ("Decisions", total),
            ("Routed to review", outcomes.get("review", 0)),
            ("Allowed by policy", outcomes.get("allow", 0)),
            ("Denied by policy", outcomes.get("deny", 0)),
            ("Approved automatically", auto),
            ("Decided by human reviewers", human),
            ("Rejected by reviewers", statuses.get(Decision.Status.REJECTED, 0)),
            ("Two-person decisions", two_person),
            ("Expired unreviewed", expired),
            ("Median time to decision", _hours(median(waits) if waits else None)),
            (CANARY_FIGURE, canaries),
        ],
        table_head=["Status", "Decisions"],
        table=[[label, statuses.get(value, 0)] for value, label in Decision.Status.choices],
    )


def _audit(start, end, head) -> Section:
    events = AuditEvent.objects.filter(created_at__gte=start, created_at__lt=end)
    exports = events.filter(event="audit.exported").count()
    verification = last_verification(at=end)
    checkpoint = latest_checkpoint(at=end)
    if verification is None:
        verified = "never run"
    elif verification.ok:
        verified = (
            f"intact, {verification.events_checked} events, "
            f"{verification.ran_at:%Y-%m-%d %H:%M} UTC"
        )
    else:
        verified = f"BROKEN at event {verification.first_broken_id}"
    return Section(
        question="audit",
        title=Finding.Question.AUDIT.label,
        answer=(
            "Every state change writes an append-only audit event in the same transaction, "
            "and the events form one SHA-256 hash chain that a verify command recomputes. "
            f"In this period {events.count()} events were recorded and {exports} exports made. "
            f"The latest verification: {verified}."
        ),
        figures=[
            ("Audit events", events.count()),
            ("Chain verification", verified),
            ("Chain head", f"seq {head.seq}, {head.hash}" if head else "empty"),
            (
                "Newest signed checkpoint",
                f"{checkpoint.created_at:%Y-%m-%d %H:%M} UTC, seq {checkpoint.seq}"
                if checkpoint
                else "none (checkpoint signing not configured)",
            ),
            (
                "Checkpoint key fingerprint",
                checkpoint.fingerprint if checkpoint and checkpoint.fingerprint else "none",
            ),
            ("Exports made", exports),
        ],
    )


def _compromise(start, end) -> Section:
    events = AuditEvent.objects.filter(created_at__gte=start, created_at__lt=end)
    alerts = Alert.objects.filter(
        created_at__gte=start, created_at__lt=end, kind__startswith="anomaly"
    )
    anomalies = alerts.count()
    answered = alerts.filter(acknowledged_at__isnull=False).count()
    suspensions = events.filter(event="agent.suspended").count()
    rotations = events.filter(event="agent_key.rotated").count()
    table = []
    for agent in Agent.objects.annotate(n_grants=Count("grants")).order_by("slug"):
        keys = [
            key
            for key in AgentKey.objects.filter(agent=agent, created_at__lt=end)
            if key.is_usable(at=end)
        ]
        oldest = max(((end - key.created_at).days for key in keys), default=None)
        table.append(
            [
                agent.slug,
                agent.get_status_display(),
                agent.n_grants,
                len(keys),
                "—" if oldest is None else f"{oldest} d",
            ]
        )
    return Section(
        question="compromise",
        title=Finding.Question.COMPROMISE.label,
        answer=(
            "Agents hold no downstream credentials: they authenticate with hashed, rotatable "
            "keys and may ask only for the actions granted to them. Anomaly rules raise alerts, "
            "force review or suspend an agent, and release re-checks the agent, key, grant and "
            f"kill switches. In this period {anomalies} anomalies were raised ({answered} "
            f"acknowledged), {rotations} keys rotated and {suspensions} agents suspended."
        ),
        figures=[
            ("Agents", len(table)),
            ("Anomalies raised", anomalies),
            ("Anomalies acknowledged", answered),
            ("Key rotations", rotations),
            ("Suspensions", suspensions),
        ],
        table_head=["Agent", "Status", "Grants", "Live keys", "Oldest key"],
        table=table,
    )


def rejection_trend(start: datetime, end: datetime) -> list[tuple[date, int, int]]:
    """(bucket start, reviewed, rejected) per week, or per 30 days past half a year."""
    step = timedelta(days=7 if end - start <= timedelta(weeks=26) else 30)
    buckets = []
    cursor = start
    while cursor < end:
        stop = min(cursor + step, end)
        reviewed = Decision.objects.filter(
            policy_outcome="review", decided_at__gte=cursor, decided_at__lt=stop, canary=False
        ).filter(Q(approval=Decision.Approval.HUMAN) | Q(status=Decision.Status.REJECTED))
        buckets.append(
            (
                cursor.date(),
                reviewed.count(),
                reviewed.filter(status=Decision.Status.REJECTED).count(),
            )
        )
        cursor = stop
    return buckets


def _update(start, end) -> Section:
    events = AuditEvent.objects.filter(created_at__gte=start, created_at__lt=end)
    versions = BehaviourVersion.objects.filter(created_at__gte=start, created_at__lt=end).count()
    activations = events.filter(event="behaviour_version.activated").count()
    rollbacks = events.filter(event="behaviour_version.rolled_back").count()
    feedback = Review.objects.filter(
        created_at__gte=start, created_at__lt=end, decision__canary=False
    )
    with_words = feedback.filter(~Q(comment="") | Q(params_after__isnull=False)).count()
    trend = rejection_trend(start, end)
    return Section(
        question="update",
        title=Finding.Question.UPDATE.label,
        answer=(
            "Each agent's instructions, settings and policy live in immutable behaviour "
            "versions that the agent fetches at run time, so a change or a rollback needs no "
            "redeploy. Reviewer verdicts, comments and edits flow back to the agent through the "
            f"feedback API. In this period {versions} versions were created, {activations} "
            f"activated and {rollbacks} rolled back, and {feedback.count()} reviews were "
            "delivered as feedback."
        ),
        figures=[
            ("Behaviour versions created", versions),
            ("Activations", activations),
            ("Rollbacks", rollbacks),
            ("Feedback delivered (reviews)", feedback.count()),
            ("Feedback with comments or edits", with_words),
        ],
        table_head=["From", "Reviewed", "Rejected", "Rejection rate"],
        table=[
            [
                week.isoformat(),
                reviewed,
                rejected,
                f"{rejected / reviewed:.0%}" if reviewed else "—",
            ]
            for week, reviewed, rejected in trend
        ],
    )


def posture_report(*, date_from: date, date_to: date, now: datetime) -> Report:
    start, end = period_bounds(date_from, date_to)
    period = Decision.objects.filter(created_at__gte=start, created_at__lt=end)
    # Canaries test reviewers, not agents: no agent figure counts them; one figure does.
    decisions = period.filter(canary=False)
    canaries = period.filter(canary=True).count()
    head = chain_head()
    findings = sorted(
        Finding.objects.filter(status=Finding.Status.OPEN).select_related("agent"),
        key=lambda f: (SEVERITY_ORDER.index(f.severity), f.check_id, f.subject),
    )
    return Report(
        date_from=date_from,
        date_to=date_to,
        generated_at=now,
        sections=[
            _prevent(decisions, canaries),
            _audit(start, end, head),
            _compromise(start, end),
            _update(start, end),
        ],
        decisions=decisions.count(),
        by_status=dict(decisions.values_list("status").annotate(n=Count("id"))),
        findings=findings,
        head_seq=head.seq if head else None,
        head_hash=head.hash if head else "",
        checkpoint=latest_checkpoint(at=end),
    )
