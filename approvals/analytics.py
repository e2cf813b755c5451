"""Reviewer analytics (issue 17): queue health and attention signals, read-only.

Everything here describes how review is going, not whether a person is good at it:
the screen shows signals to look into, never verdicts.
"""

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, F, Q
from django.db.models.functions import TruncHour

from aispm_site import roles
from audit.models import AuditEvent

from .models import Decision, Review

SAMPLE = 20_000
APPROVING = {Review.Verdict.APPROVE, Review.Verdict.EDIT_APPROVE}
HIGH_RISKS = {"high", "critical"}
# Who can tell a canary from a real decision, besides the database.
CANARY_SIGHTED = (roles.AUDIT_PERMISSION, roles.MANAGE_AGENTS_PERMISSION)


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class ReviewerRow:
    username: str
    reviews: int = 0
    approvals: int = 0
    rejections: int = 0
    times: list = field(default_factory=list)
    on_screen: list = field(default_factory=list)
    long_seen: int = 0
    long_expanded: int = 0
    longest_streak: int = 0
    fast_high_risk: int = 0
    canaries_seen: int = 0
    canaries_caught: int = 0
    # A reviewer who may also read the audit trail or manage agents can see which
    # decisions are canaries (the trail's canary.inserted event, the export's column,
    # the agent's canary templates): their catch rate does not measure attention.
    sees_canaries: bool = False
    # Approvals by path (ReviewAttention.via), and those with no time on screen measured
    # (bulk approval, a forged or missing measurement, or none recorded).
    via: Counter = field(default_factory=Counter)
    unmeasured: int = 0

    @property
    def via_text(self) -> str:
        return " · ".join(f"{path} {n}" for path, n in sorted(self.via.items()))

    @property
    def p50(self):
        return percentile(self.times, 50)

    @property
    def p95(self):
        return percentile(self.times, 95)

    @property
    def on_screen_p50(self):
        return percentile(self.on_screen, 50)

    @property
    def catch_rate(self):
        if not self.canaries_seen:
            return None
        return round(100 * self.canaries_caught / self.canaries_seen)

    @property
    def expanded_rate(self):
        return round(100 * self.long_expanded / self.long_seen) if self.long_seen else None


def _reviews(since: datetime):
    return (
        Review.objects.filter(created_at__gte=since)
        .select_related("reviewer", "decision", "decision__action_type", "attention")
        .order_by("reviewer_id", "created_at", "id")[:SAMPLE]
    )


def reviewer_rows(*, since: datetime, fast_seconds: int) -> list[ReviewerRow]:
    rows: dict[int, ReviewerRow] = {}
    streaks: dict[int, int] = defaultdict(int)
    for review in _reviews(since):
        row = rows.get(review.reviewer_id)
        if row is None:
            row = rows[review.reviewer_id] = ReviewerRow(
                review.reviewer.get_username(),
                sees_canaries=roles.has_any_perm(review.reviewer, CANARY_SIGHTED),
            )
        decision = review.decision
        row.reviews += 1
        row.times.append((review.created_at - decision.created_at).total_seconds())
        approving = review.verdict in APPROVING
        if approving:
            row.approvals += 1
            streaks[review.reviewer_id] += 1
            row.longest_streak = max(row.longest_streak, streaks[review.reviewer_id])
        else:
            row.rejections += 1
            streaks[review.reviewer_id] = 0
        attention = getattr(review, "attention", None)
        if approving and (attention is None or attention.seconds_on_screen is None):
            row.unmeasured += 1
        if attention is not None and approving:
            row.via[attention.via] += 1
            if attention.seconds_on_screen is not None:
                row.on_screen.append(attention.seconds_on_screen)
                if decision.risk in HIGH_RISKS and attention.seconds_on_screen < fast_seconds:
                    row.fast_high_risk += 1
            if attention.params_long:
                row.long_seen += 1
                row.long_expanded += bool(attention.params_expanded)
        if decision.canary:
            row.canaries_seen += 1
            row.canaries_caught += not approving
    return sorted(rows.values(), key=lambda r: r.username)


def action_rows(*, since: datetime) -> list[dict]:
    times: dict[str, list] = defaultdict(list)
    decided = Decision.objects.filter(
        decided_at__isnull=False, created_at__gte=since, canary=False
    ).filter(Q(approval=Decision.Approval.HUMAN) | Q(status=Decision.Status.REJECTED))
    for key, created, decided_at in decided.values_list(
        "action_type__key", "created_at", "decided_at"
    )[:SAMPLE]:
        times[key].append((decided_at - created).total_seconds())
    return [
        {"action": key, "decided": len(v), "p50": percentile(v, 50), "p95": percentile(v, 95)}
        for key, v in sorted(times.items())
    ]


def hourly(*, since: datetime, now: datetime) -> list[dict]:
    """Per hour: arrivals, human decisions, and pending at the end of the hour."""
    hours = []
    start = since.replace(minute=0, second=0, microsecond=0)
    while start <= now:
        hours.append(start)
        start += timedelta(hours=1)
    reviewed = Q(policy_outcome="review")
    arrivals = dict(
        Decision.objects.filter(reviewed, created_at__gte=hours[0])
        .annotate(hour=TruncHour("created_at"))
        .values("hour")
        .annotate(n=Count("pk"))
        .values_list("hour", "n")
    )
    decisions = dict(
        Decision.objects.filter(reviewed, decided_at__gte=hours[0])
        .annotate(hour=TruncHour("decided_at"))
        .values("hour")
        .annotate(n=Count("pk"))
        .values_list("hour", "n")
    )
    pending_before = (
        Decision.objects.filter(reviewed, created_at__lt=hours[0])
        .filter(Q(decided_at__isnull=True) | Q(decided_at__gte=hours[0]))
        .count()
    )
    rows, pending = [], pending_before
    for hour in hours:
        came, went = arrivals.get(hour, 0), decisions.get(hour, 0)
        pending = max(pending + came - went, 0)
        rows.append({"hour": hour, "arrivals": came, "decisions": went, "pending": pending})
    return rows


def queue_health(*, now: datetime, hours: int = 24) -> dict:
    since = now - timedelta(hours=hours)
    sla = timedelta(hours=settings.AISPM_REVIEW_SLA_HOURS)
    reviewed = Decision.objects.filter(policy_outcome="review", created_at__gte=since)
    breaches = reviewed.filter(
        Q(decided_at__isnull=False, decided_at__gt=F("created_at") + sla)
        | Q(decided_at__isnull=True, created_at__lt=now - sla, status=Decision.Status.PENDING)
    ).count()
    return {
        "since": since,
        "hourly": hourly(since=since, now=now),
        "pending_now": Decision.objects.filter(status=Decision.Status.PENDING).count(),
        "sla_hours": settings.AISPM_REVIEW_SLA_HOURS,
        "sla_breaches": breaches,
        "escalations": AuditEvent.objects.filter(
            event="decision.escalated", created_at__gte=since
        ).count(),
        "expired": reviewed.filter(status=Decision.Status.EXPIRED).count(),
    }


# --- server-side SVG ---------------------------------------------------------------


def line_chart(rows: list[dict], series: list[str], *, width=640, height=180, pad=28) -> dict:
    """Points for an SVG polyline per series, and axis labels; no script, no style."""
    top = max([1] + [row[name] for row in rows for name in series])
    span = max(len(rows) - 1, 1)
    plot_w, plot_h = width - 2 * pad, height - 2 * pad

    def x(i):
        return round(pad + plot_w * i / span, 1)

    def y(v):
        return round(pad + plot_h * (1 - v / top), 1)

    lines = [
        {
            "name": name,
            "points": " ".join(f"{x(i)},{y(row[name])}" for i, row in enumerate(rows)),
            "last": rows[-1][name] if rows else 0,
        }
        for name in series
    ]
    ticks = [
        {"x": x(i), "label": row["hour"].strftime("%H:%M")}
        for i, row in enumerate(rows)
        if i % max(len(rows) // 6, 1) == 0
    ]
    return {
        "width": width,
        "height": height,
        "pad": pad,
        "bottom": height - pad,
        "right": width - pad,
        "top_value": top,
        "lines": lines,
        "ticks": ticks,
    }


def bar_chart(items: list[tuple[str, float | None]], *, width=640, bar=18, gap=6, label_w=160):
    """Horizontal bars (e.g. p95 per reviewer) as rectangles with their labels."""
    top = max([1.0] + [v for _l, v in items if v is not None])
    plot_w = width - label_w - 60
    bars = []
    for i, (label, value) in enumerate(items):
        length = 0 if value is None else round(plot_w * value / top, 1)
        bars.append(
            {
                "label": label,
                "value": value,
                "y": i * (bar + gap),
                "text_y": i * (bar + gap) + bar - 4,
                "width": length,
                "value_x": label_w + length + 6,
            }
        )
    return {
        "width": width,
        "height": max(len(items) * (bar + gap), bar),
        "bar": bar,
        "label_w": label_w,
        "bars": bars,
    }
