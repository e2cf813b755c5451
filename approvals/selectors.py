import base64

from django.db.models import Prefetch, QuerySet

from agents.models import Agent

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
