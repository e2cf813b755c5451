import base64
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from django.db import connections
from django.db.models import Count, Prefetch, Q, QuerySet
from django.utils import timezone

from agents.models import RISK_RANK, ActionType, Agent, Risk
from aispm_site import hostile

from .behaviour_selectors import (  # noqa: F401 - re-exported: they lived here
    HUMAN_APPROVED,
    MEDIAN_SAMPLE,
    ROUTE_PART_LABELS,
    ROUTE_PARTS,
    DryRun,
    PendingPreview,
    _route_of,
    pending_reroute_preview,
    policy_dry_run,
    route_changes,
    version_metrics,
)
from .models import Decision, DecisionSnooze, Review

FEEDBACK_PAGE = 100


def _with_reviews(queryset: QuerySet[Decision]) -> QuerySet[Decision]:
    return queryset.select_related("action_type").prefetch_related(
        Prefetch("reviews", queryset=Review.objects.select_related("reviewer").order_by("id"))
    )


def decisions_for_agent(*, agent: Agent, status: str | None = None) -> QuerySet[Decision]:
    queryset = Decision.objects.filter(agent=agent, canary=False)
    if status:
        queryset = queryset.filter(status=status)
    return _with_reviews(queryset)


def decision_for_agent(*, agent: Agent, decision_id) -> Decision | None:
    return _with_reviews(Decision.objects.filter(agent=agent, pk=decision_id, canary=False)).first()


def encode_feedback_cursor(review: Review) -> str:
    raw = f"r{review.txid}.{review.pk}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_feedback_cursor(cursor: str) -> tuple[int, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise ValueError("invalid cursor") from None
    txid, _, pk = raw.removeprefix("r").partition(".")
    if not raw.startswith("r") or not txid.isdigit() or not pk.isdigit() or len(raw) > 41:
        raise ValueError("invalid cursor")
    return int(txid), int(pk)


def _finished_transactions() -> Q:
    """Reviews whose transaction has finished, so none can appear behind a cursor later.

    Reviews are read in (txid, id) order. On PostgreSQL a review written by a
    transaction still running is held back until every transaction older than the
    oldest running one has finished; a transaction that starts later gets a larger
    txid, so it always lands after the cursor. SQLite has one writer at a time.
    """
    connection = connections[Review.objects.db]
    if connection.vendor != "postgresql":
        return Q()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint,"
            " pg_current_xact_id_if_assigned()::text::bigint"
        )
        horizon, own = cursor.fetchone()
    return Q(txid__lt=horizon) | Q(txid=own) if own is not None else Q(txid__lt=horizon)


def feedback_for_agent(
    *, agent: Agent, after: tuple[int, int] = (0, 0), limit: int = FEEDBACK_PAGE
) -> list[Review]:
    """Reviews of the agent's decisions after the cursor, oldest first, with a cursor that
    stays valid however reviews commit."""
    txid, pk = after
    return list(
        Review.objects.filter(decision__agent=agent, decision__canary=False)
        .filter(Q(txid__gt=txid) | Q(txid=txid, pk__gt=pk))
        .filter(_finished_transactions())
        .select_related("reviewer", "decision__action_type")
        .order_by("txid", "pk")[:limit]
    )


# --- the reviewer inbox ---------------------------------------------------------

INBOX_PAGE = 25
AGE_FILTERS = {
    "lt1h": ("Under 1 hour", timedelta(hours=1), None),
    "lt24h": ("Under 24 hours", timedelta(hours=24), None),
    "gt24h": ("Over 24 hours", None, timedelta(hours=24)),
}


# The inbox's tabs: "" is the reviewer's own queue (what they can act on), "routine"
# the bulk-eligible part of it, "waiting" what waits for someone else.
QUEUES = {"": "For you", "routine": "Routine", "waiting": "Waiting for others"}


@dataclass(frozen=True)
class InboxFilters:
    agent: str = ""
    action: str = ""
    risk: str = ""
    age: str = ""
    queue: str = ""

    @classmethod
    def from_query(cls, query) -> "InboxFilters":
        risk = query.get("risk", "")
        age = query.get("age", "")
        queue = query.get("queue", "")
        return cls(
            agent=hostile.query_text(query, "agent"),
            action=hostile.query_text(query, "action"),
            risk=risk if risk in Risk.values else "",
            age=age if age in AGE_FILTERS else "",
            queue=queue if queue in QUEUES else "",
        )

    @property
    def narrowed(self) -> bool:
        """Whether a filter (not the tab) narrows the list."""
        return bool(self.agent or self.action or self.risk or self.age)

    def as_query(self) -> dict[str, str]:
        return {name: value for name, value in vars(self).items() if value}


def _routine(queryset: QuerySet[Decision]) -> QuerySet[Decision]:
    """The bulk-eligible decisions, as services.is_bulk_approvable decides one."""
    return queryset.filter(bulk_allowed=True, risk="low").exclude(
        action_type__irreversible=True, required_approvals__gt=1
    )


def _pending(filters: InboxFilters, *, now: datetime, user=None) -> QuerySet[Decision]:
    queryset = Decision.objects.filter(status=Decision.Status.PENDING)
    if user is not None:
        queryset = queryset.filter(pk__in=queue_for(user=user, queue=filters.queue).values("pk"))
        # What this reviewer snoozed stays out of their own queue until then.
        queryset = queryset.exclude(
            pk__in=DecisionSnooze.objects.filter(user=user, until__gt=now).values("decision_id")
        )
        if filters.queue == "routine":
            queryset = _routine(queryset)
    if filters.agent:
        queryset = queryset.filter(agent__slug=filters.agent)
    if filters.action:
        queryset = queryset.filter(action_type__key=filters.action)
    if filters.risk:
        # risk_rank too, so that decision_inbox's range scan starts at this risk's band.
        queryset = queryset.filter(risk=filters.risk, risk_rank=RISK_RANK[filters.risk])
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


def _decode_inbox_key(cursor: str) -> tuple[int, datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        rank_text, expires_text, id_text = raw.split("|")
        return int(rank_text), datetime.fromisoformat(expires_text), UUID(id_text)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("invalid cursor") from None


@dataclass(frozen=True)
class InboxPage:
    decisions: list[Decision]
    next_cursor: str | None
    prev_cursor: str | None = None  # for `before`: the page ending just before this one


def inbox_page(
    *,
    filters: InboxFilters,
    cursor: str = "",
    size: int = INBOX_PAGE,
    now: datetime,
    user=None,
) -> InboxPage:
    """One page of pending decisions in one query, by keyset, whatever the page number.
    With `user`, only the tab's queue for that reviewer (see QUEUES)."""
    queryset = (
        _pending(filters, now=now, user=user)
        .select_related("agent", "action_type")
        .order_by("-risk_rank", "expires_at", "id")
    )
    if not cursor:
        rows = list(queryset[: size + 1])
    else:
        # Two index range scans on decision_inbox, each stopping after a page (the rest
        # of the cursor's risk band, then the lower bands) in one UNION ALL. A single
        # OR'd condition makes PostgreSQL read every pending row before the cursor.
        rank, expires, pk = _decode_inbox_key(cursor)
        band = queryset.filter(risk_rank=rank, expires_at__gte=expires).filter(
            Q(expires_at__gt=expires) | Q(pk__gt=pk)
        )
        lower = queryset.filter(risk_rank__lt=rank)
        if connections[Decision.objects.db].features.supports_slicing_ordering_in_compound:
            combined = band[: size + 1].union(lower[: size + 1], all=True)
        else:  # SQLite (development): one query, the OR'd condition.
            combined = band | lower
        rows = list(combined.order_by("-risk_rank", "expires_at", "id")[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    return InboxPage(
        rows,
        _inbox_key(rows[-1]) if more and rows else None,
        _inbox_key(rows[0]) if cursor and rows else None,
    )


def inbox_page_before(
    *, filters: InboxFilters, cursor: str, size: int = INBOX_PAGE, now: datetime, user=None
) -> InboxPage:
    """The page that ends just before `cursor`'s decision, in inbox order (for `k` on a
    page's first row). Rarer than paging forward, so one plain OR'd range suffices."""
    rank, expires, pk = _decode_inbox_key(cursor)
    earlier = (
        _pending(filters, now=now, user=user)
        .select_related("agent", "action_type")
        .filter(
            Q(risk_rank__gt=rank)
            | Q(risk_rank=rank, expires_at__lt=expires)
            | Q(risk_rank=rank, expires_at=expires, pk__lt=pk)
        )
        .order_by("risk_rank", "-expires_at", "-id")
    )
    rows = list(earlier[: size + 1])
    more = len(rows) > size
    rows = list(reversed(rows[:size]))
    return InboxPage(
        rows,
        _inbox_key(rows[-1]) if rows else None,
        _inbox_key(rows[0]) if more and rows else None,
    )


def inbox_next_after(
    *, decision: Decision, filters: InboxFilters, now: datetime, user=None
) -> Decision | None:
    """The pending decision that follows `decision` in inbox order, or the first one."""
    if decision.expires_at is not None:
        following = inbox_page(
            filters=filters, cursor=_inbox_key(decision), size=1, now=now, user=user
        )
        if following.decisions:
            return following.decisions[0]
    first = inbox_page(filters=filters, size=1, now=now, user=user)
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


def agent_record(*, decision: Decision, recent: int = 5) -> dict:
    """The agent's track record with reviewers, and its last decisions of this action."""
    counts = Decision.objects.filter(agent_id=decision.agent_id, canary=False).aggregate(
        approved=Count("pk", filter=Q(approval=Decision.Approval.HUMAN, status__in=HUMAN_APPROVED)),
        rejected=Count("pk", filter=Q(status=Decision.Status.REJECTED)),
    )
    decided = counts["approved"] + counts["rejected"]
    history = list(
        Decision.objects.filter(
            agent_id=decision.agent_id, action_type_id=decision.action_type_id, canary=False
        )
        .exclude(pk=decision.pk)
        .select_related("action_type")
        .order_by("-created_at")
        .only(
            "id",
            "status",
            "summary",
            "params",
            "approved_params",
            "created_at",
            "status_reason",
            "action_type__key",
            "action_type__summary_template",
        )[:recent]
    )
    return {
        "approved": counts["approved"],
        "rejected": counts["rejected"],
        "approval_rate": round(100 * counts["approved"] / decided) if decided else None,
        "history": history,
    }


# --- behaviour versions: metrics and dry runs ------------------------------------------


def feedback_rows(
    *, agent: Agent, version: int | None = None, since=None, until=None
) -> QuerySet[Review]:
    """Reviews with their decision context, for the feedback JSON Lines export."""
    reviews = Review.objects.filter(decision__agent=agent, decision__canary=False)
    if version is not None:
        reviews = reviews.filter(decision__behaviour_version=version)
    if since is not None:
        reviews = reviews.filter(created_at__gte=since)
    if until is not None:
        reviews = reviews.filter(created_at__lt=until)
    return reviews.select_related("decision", "decision__action_type", "reviewer").order_by(
        "created_at", "pk"
    )


def _reviewed_or_owned_by(user) -> Q:
    """Pending decisions this reviewer cannot act on: already reviewed by them, or on an
    agent they own (someone else must review those)."""
    return Q(reviews__reviewer=user) | Q(agent__owner=user)


def queue_for(*, user, queue: str) -> QuerySet[Decision]:
    """Pending decisions in the reviewer's queue: their own (they can act on them; any
    queue but "waiting") or "waiting" (they approved it and it waits for another
    reviewer, or it is on an agent they own)."""
    pending = Decision.objects.filter(status=Decision.Status.PENDING)
    blocked = pending.filter(_reviewed_or_owned_by(user)).values("pk")
    if queue == "waiting":
        return pending.filter(pk__in=blocked)
    return pending.exclude(pk__in=blocked)


def queue_counts(*, user, now: datetime | None = None) -> dict[str, int]:
    """The tabs' counts in one query. What the reviewer snoozed counts only as snoozed,
    as the lists leave it out of every other tab until the snooze ends."""
    from django.db.models import Exists, OuterRef

    now = now or timezone.now()
    reviewed = Exists(Review.objects.filter(decision=OuterRef("pk"), reviewer=user))
    snoozed = Q(
        Exists(DecisionSnooze.objects.filter(decision=OuterRef("pk"), user=user, until__gt=now))
    )
    blocked = Q(reviewed) | Q(agent__owner=user)
    routine = Q(bulk_allowed=True, risk="low") & ~Q(
        action_type__irreversible=True, required_approvals__gt=1
    )
    return Decision.objects.filter(status=Decision.Status.PENDING).aggregate(
        mine=Count("pk", filter=~blocked & ~snoozed),
        routine=Count("pk", filter=~blocked & routine & ~snoozed),
        waiting=Count("pk", filter=blocked & ~snoozed),
        snoozed=Count("pk", filter=snoozed),
    )


def needs_confirmation(decision: Decision) -> bool:
    """Whether approving takes a deliberate second step: a critical decision, or an
    irreversible one at high risk or above."""
    if decision.risk == Risk.CRITICAL:
        return True
    high = RISK_RANK.get(decision.risk, 0) >= RISK_RANK[Risk.HIGH]
    return decision.action_type.irreversible and high
