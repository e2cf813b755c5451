import base64
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from django.db.models import Count, Prefetch, Q, QuerySet

from agents.models import ActionType, Agent, Risk

from .models import Decision, Review

FEEDBACK_PAGE = 100


def _with_reviews(queryset: QuerySet[Decision]) -> QuerySet[Decision]:
    return queryset.select_related("action_type").prefetch_related(
        Prefetch("reviews", queryset=Review.objects.select_related("reviewer").order_by("id"))
    )


def decisions_for_agent(*, agent: Agent, status: str | None = None) -> QuerySet[Decision]:
    queryset = Decision.objects.filter(agent=agent)
    if status:
        queryset = queryset.filter(status=status)
    return _with_reviews(queryset)


def decision_for_agent(*, agent: Agent, decision_id) -> Decision | None:
    return _with_reviews(Decision.objects.filter(agent=agent, pk=decision_id)).first()


def encode_feedback_cursor(review_id: int) -> str:
    return base64.urlsafe_b64encode(f"r{review_id}".encode()).decode().rstrip("=")


def decode_feedback_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise ValueError("invalid cursor") from None
    if not raw.startswith("r") or not raw[1:].isdigit() or len(raw) > 20:
        raise ValueError("invalid cursor")
    return int(raw[1:])


def feedback_for_agent(*, agent: Agent, after: int = 0, limit: int = FEEDBACK_PAGE) -> list[Review]:
    return list(
        Review.objects.filter(decision__agent=agent, pk__gt=after)
        .select_related("reviewer", "decision__action_type")
        .order_by("pk")[:limit]
    )


# --- the reviewer inbox ---------------------------------------------------------

INBOX_PAGE = 25
AGE_FILTERS = {
    "lt1h": ("Under 1 hour", timedelta(hours=1), None),
    "lt24h": ("Under 24 hours", timedelta(hours=24), None),
    "gt24h": ("Over 24 hours", None, timedelta(hours=24)),
}


@dataclass(frozen=True)
class InboxFilters:
    agent: str = ""
    action: str = ""
    risk: str = ""
    age: str = ""

    @classmethod
    def from_query(cls, query) -> "InboxFilters":
        risk = query.get("risk", "")
        age = query.get("age", "")
        return cls(
            agent=query.get("agent", "")[:100],
            action=query.get("action", "")[:100],
            risk=risk if risk in Risk.values else "",
            age=age if age in AGE_FILTERS else "",
        )

    def as_query(self) -> dict[str, str]:
        return {name: value for name, value in vars(self).items() if value}


def _pending(filters: InboxFilters, *, now: datetime) -> QuerySet[Decision]:
    queryset = Decision.objects.filter(status=Decision.Status.PENDING)
    if filters.agent:
        queryset = queryset.filter(agent__slug=filters.agent)
    if filters.action:
        queryset = queryset.filter(action_type__key=filters.action)
    if filters.risk:
        queryset = queryset.filter(risk=filters.risk)
    if filters.age:
        _label, younger_than, older_than = AGE_FILTERS[filters.age]
        if younger_than:
            queryset = queryset.filter(created_at__gt=now - younger_than)
        if older_than:
            queryset = queryset.filter(created_at__lte=now - older_than)
    return queryset


def _inbox_key(decision: Decision) -> str:
    raw = f"{decision.risk_rank}|{decision.expires_at.isoformat()}|{decision.pk}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _after(cursor: str) -> Q:
    """Rows after `cursor` in inbox order: risk descending, then nearest expiry, then id."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        rank_text, expires_text, id_text = raw.split("|")
        rank, expires, pk = int(rank_text), datetime.fromisoformat(expires_text), UUID(id_text)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("invalid cursor") from None
    return (
        Q(risk_rank__lt=rank)
        | Q(risk_rank=rank, expires_at__gt=expires)
        | Q(risk_rank=rank, expires_at=expires, pk__gt=pk)
    )


@dataclass(frozen=True)
class InboxPage:
    decisions: list[Decision]
    next_cursor: str | None


def inbox_page(
    *, filters: InboxFilters, cursor: str = "", size: int = INBOX_PAGE, now: datetime
) -> InboxPage:
    """One page of pending decisions in one query, by keyset, whatever the page number."""
    queryset = _pending(filters, now=now)
    if cursor:
        queryset = queryset.filter(_after(cursor))
    rows = list(
        queryset.select_related("agent", "action_type").order_by("-risk_rank", "expires_at", "id")[
            : size + 1
        ]
    )
    more = len(rows) > size
    rows = rows[:size]
    return InboxPage(rows, _inbox_key(rows[-1]) if more and rows else None)


def inbox_next_after(
    *, decision: Decision, filters: InboxFilters, now: datetime
) -> Decision | None:
    """The pending decision that follows `decision` in inbox order, or the first one."""
    if decision.expires_at is not None:
        following = inbox_page(filters=filters, cursor=_inbox_key(decision), size=1, now=now)
        if following.decisions:
            return following.decisions[0]
    first = inbox_page(filters=filters, size=1, now=now)
    return first.decisions[0] if first.decisions else None


def inbox_counts(*, now: datetime, sla: timedelta) -> dict[str, int]:
    return Decision.objects.filter(status=Decision.Status.PENDING).aggregate(
        pending=Count("pk"),
        breaches=Count("pk", filter=Q(created_at__lte=now - sla)),
    )


def inbox_filter_choices() -> dict[str, list]:
    return {
        "agents": list(Agent.objects.order_by("slug").values_list("slug", "name")),
        "actions": list(ActionType.objects.order_by("key").values_list("key", "name")),
    }


def decision_for_review(*, decision_id) -> Decision | None:
    return (
        Decision.objects.select_related("agent", "agent__owner", "action_type", "decided_by")
        .prefetch_related(
            Prefetch("reviews", queryset=Review.objects.select_related("reviewer").order_by("id"))
        )
        .filter(pk=decision_id)
        .first()
    )


HUMAN_APPROVED = [
    Decision.Status.APPROVED,
    Decision.Status.RELEASING,
    Decision.Status.RELEASED,
    Decision.Status.FAILED,
    Decision.Status.BLOCKED,
]


def agent_record(*, decision: Decision, recent: int = 5) -> dict:
    """The agent's track record with reviewers, and its last decisions of this action."""
    counts = Decision.objects.filter(agent_id=decision.agent_id).aggregate(
        approved=Count("pk", filter=Q(approval=Decision.Approval.HUMAN, status__in=HUMAN_APPROVED)),
        rejected=Count("pk", filter=Q(status=Decision.Status.REJECTED)),
    )
    decided = counts["approved"] + counts["rejected"]
    history = list(
        Decision.objects.filter(agent_id=decision.agent_id, action_type_id=decision.action_type_id)
        .exclude(pk=decision.pk)
        .order_by("-created_at")
        .only("id", "status", "summary", "created_at", "status_reason")[:recent]
    )
    return {
        "approved": counts["approved"],
        "rejected": counts["rejected"],
        "approval_rate": round(100 * counts["approved"] / decided) if decided else None,
        "history": history,
    }
