import base64
import statistics
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from django.db import connections
from django.db.models import Count, Prefetch, Q, QuerySet
from django.utils import timezone

from agents.models import RISK_RANK, ActionType, Agent, Risk
from aispm_site import hostile

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
        Review.objects.filter(decision__agent=agent)
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


# --- behaviour versions: metrics and dry runs ------------------------------------------

MEDIAN_SAMPLE = 5000


def version_metrics(*, agent: Agent) -> list[dict]:
    """Per behaviour version: counts, rejection rate, median time to decision and the
    top reject reasons and tags, newest version first."""
    rows = (
        Decision.objects.filter(agent=agent, behaviour_version__isnull=False)
        .values("behaviour_version")
        .annotate(
            decisions=Count("pk"),
            auto_allowed=Count("pk", filter=Q(approval=Decision.Approval.AUTO)),
            approved=Count(
                "pk", filter=Q(approval=Decision.Approval.HUMAN, status__in=HUMAN_APPROVED)
            ),
            rejected=Count("pk", filter=Q(status=Decision.Status.REJECTED)),
            expired=Count("pk", filter=Q(status=Decision.Status.EXPIRED)),
            denied=Count("pk", filter=Q(status=Decision.Status.DENIED)),
            pending=Count("pk", filter=Q(status=Decision.Status.PENDING)),
        )
        .order_by("-behaviour_version")
    )
    edited = dict(
        Review.objects.filter(decision__agent=agent, verdict=Review.Verdict.EDIT_APPROVE)
        .values("decision__behaviour_version")
        .annotate(n=Count("decision", distinct=True))
        .values_list("decision__behaviour_version", "n")
    )
    metrics = []
    for row in rows:
        number = row["behaviour_version"]
        reviewed = row["approved"] + row["rejected"]
        decided_by_people = Decision.objects.filter(
            Q(approval=Decision.Approval.HUMAN) | Q(status=Decision.Status.REJECTED),
            agent=agent,
            behaviour_version=number,
            decided_at__isnull=False,
        ).values_list("created_at", "decided_at")[:MEDIAN_SAMPLE]
        durations = [(decided - created).total_seconds() for created, decided in decided_by_people]
        rejects = Review.objects.filter(
            decision__agent=agent,
            decision__behaviour_version=number,
            verdict=Review.Verdict.REJECT,
        ).values_list("comment", "tags")[:MEDIAN_SAMPLE]
        reasons, tags = Counter(), Counter()
        for comment, review_tags in rejects:
            reasons[" ".join(comment.split())[:200]] += 1
            tags.update(review_tags or [])
        metrics.append(
            {
                "version": number,
                **{k: v for k, v in row.items() if k != "behaviour_version"},
                "edited": edited.get(number, 0),
                "reviewed": reviewed,
                "rejection_rate": row["rejected"] / reviewed if reviewed else None,
                "median_seconds": statistics.median(durations) if durations else None,
                "top_reasons": reasons.most_common(5),
                "top_tags": tags.most_common(5),
            }
        )
    return metrics


# What a route decides, in the order a person reads a change of it.
ROUTE_PARTS = ("outcome", "rule", "approvals", "risk", "ttl", "bulk")
ROUTE_PART_LABELS = {
    "outcome": "outcome",
    "rule": "rule",
    "approvals": "approvals needed",
    "risk": "risk",
    "ttl": "time to expire",
    "bulk": "bulk approval",
}


def route_changes(decision: Decision, route) -> list[str]:
    """Which parts of `decision`'s routing `route` would change, in ROUTE_PARTS order.

    Approvals, risk, ttl and bulk matter only to a decision that waits for review, so
    they are compared only when both routes are reviews."""
    changes = []
    if route.outcome != decision.policy_outcome:
        changes.append("outcome")
    if (route.rule or "") != (decision.policy_rule or ""):
        changes.append("rule")
    if route.outcome == decision.policy_outcome == "review":
        if route.approvals != decision.required_approvals:
            changes.append("approvals")
        if route.risk != decision.risk:
            changes.append("risk")
        if decision.expires_at is not None and decision.created_at is not None:
            ttl = decision.expires_at - decision.created_at
            if abs((ttl - route.ttl).total_seconds()) >= 1:
                changes.append("ttl")
        if bool(route.bulk) != bool(decision.bulk_allowed):
            changes.append("bulk")
    return changes


@dataclass(frozen=True)
class PendingPreview:
    """What a policy would do to the agent's pending decisions if it were active now."""

    total: int
    rerouted: int  # still wait for review, on a different route
    cancelled: int  # the policy denies them
    unchanged: int
    kinds: dict  # part -> count, over the re-routed and cancelled


@dataclass(frozen=True)
class DryRun:
    replayed: int
    changed: int  # decisions with any part of their routing different
    transitions: dict  # (was, would be) -> count, outcome changes only
    kinds: dict  # part of the route -> how many decisions it changes for
    examples: dict  # (was, would be) -> [(decision, route, [parts]), ...], three each
    pending: PendingPreview | None = None


def _route_of(decision: Decision, version, agent: Agent):
    from . import policy

    return policy.route(
        version=version,
        agent=agent,
        action_type=decision.action_type,
        params=decision.params,
        evidence=decision.evidence,
        confidence=decision.confidence,
    )


def pending_reroute_preview(*, agent: Agent, version) -> PendingPreview:
    """Route every pending decision of `agent` through `version` without saving anything:
    how many would be re-routed, cancelled (denied) or left as they are."""
    rerouted = cancelled = unchanged = 0
    kinds = Counter()
    pending = Decision.objects.filter(agent=agent, status=Decision.Status.PENDING)
    for decision in pending.select_related("action_type"):
        route = _route_of(decision, version, agent)
        changes = route_changes(decision, route)
        if not changes:
            unchanged += 1
            continue
        kinds.update(changes)
        if route.outcome == "deny":
            cancelled += 1
        else:
            rerouted += 1
    return PendingPreview(
        total=rerouted + cancelled + unchanged,
        rerouted=rerouted,
        cancelled=cancelled,
        unchanged=unchanged,
        kinds={part: kinds[part] for part in ROUTE_PARTS if kinds[part]},
    )


def policy_dry_run(*, agent: Agent, policy_rules: list, days: int, limit: int = 5000) -> DryRun:
    """Replay the agent's decisions of the last `days` days through a candidate policy:
    how many would be routed differently in any part (outcome, rule, approvals, risk,
    ttl, bulk), and what it would do to the decisions pending now."""
    from agents.models import BehaviourVersion

    candidate = BehaviourVersion(agent=agent, policy=policy_rules)
    since = timezone.now() - timedelta(days=days)
    decisions = (
        Decision.objects.filter(agent=agent, created_at__gte=since)
        .select_related("action_type")
        .order_by("-created_at")[:limit]
    )
    transitions, kinds = Counter(), Counter()
    examples = {}
    replayed = changed = 0
    for decision in decisions:
        replayed += 1
        route = _route_of(decision, candidate, agent)
        changes = route_changes(decision, route)
        if not changes:
            continue
        changed += 1
        kinds.update(changes)
        if "outcome" in changes:
            transitions[(decision.policy_outcome, route.outcome)] += 1
        bucket = examples.setdefault((decision.policy_outcome, route.outcome), [])
        if len(bucket) < 3:
            bucket.append((decision, route, changes))
    return DryRun(
        replayed=replayed,
        changed=changed,
        transitions=dict(transitions),
        kinds={part: kinds[part] for part in ROUTE_PARTS if kinds[part]},
        examples=examples,
        pending=pending_reroute_preview(agent=agent, version=candidate),
    )


def feedback_rows(
    *, agent: Agent, version: int | None = None, since=None, until=None
) -> QuerySet[Review]:
    """Reviews with their decision context, for the feedback JSON Lines export."""
    reviews = Review.objects.filter(decision__agent=agent)
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


def queue_counts(*, user) -> dict[str, int]:
    """The three tabs' counts in one query."""
    from django.db.models import Exists, OuterRef

    reviewed = Exists(Review.objects.filter(decision=OuterRef("pk"), reviewer=user))
    blocked = Q(reviewed) | Q(agent__owner=user)
    routine = Q(bulk_allowed=True, risk="low") & ~Q(
        action_type__irreversible=True, required_approvals__gt=1
    )
    return Decision.objects.filter(status=Decision.Status.PENDING).aggregate(
        mine=Count("pk", filter=~blocked),
        routine=Count("pk", filter=~blocked & routine),
        waiting=Count("pk", filter=blocked),
    )


def needs_confirmation(decision: Decision) -> bool:
    """Whether approving takes a deliberate second step: a critical decision, or an
    irreversible one at high risk or above."""
    if decision.risk == Risk.CRITICAL:
        return True
    high = RISK_RANK.get(decision.risk, 0) >= RISK_RANK[Risk.HIGH]
    return decision.action_type.irreversible and high
