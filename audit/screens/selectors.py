"""Reads behind the auditor screens and exports: decision search, trails, export chunks."""

import base64
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from uuid import UUID

from django.contrib.auth import get_user_model
from django.db import OperationalError, connection, transaction
from django.db.models import (
    BooleanField,
    Exists,
    F,
    Func,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    TextField,
    Value,
)
from django.db.models.functions import Cast

from agents.models import ActionType, Agent
from aispm_site import hostile
from approvals.models import Decision, ReleaseAttempt, Review
from audit.models import AuditEvent
from audit.selectors import audit_events_for

SEARCH_PAGE = 50
EXPORT_CHUNK = 2000
# The free-text search scans reasoning with a case-insensitive LIKE: a bounded needle.
TEXT_MIN, TEXT_MAX = 2, 100
TEXT_SEARCH_TIMEOUT_MS = 5000
QUERY_CANCELED = "57014"  # PostgreSQL's SQLSTATE for a statement timeout
DECISION_TARGET = Decision._meta.label_lower


def _date(value: str) -> date | None:
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        return None


@dataclass(frozen=True)
class TrailFilters:
    date_from: date | None = None
    date_to: date | None = None
    agent: str = ""
    action: str = ""
    status: str = ""
    reviewer: str = ""
    text: str = ""

    @classmethod
    def from_query(cls, query) -> "TrailFilters":
        """Filters from a query string; values that make no sense are dropped, not errors."""
        status = query.get("status", "")
        text = " ".join(hostile.query_text(query, "q", max_length=TEXT_MAX * 2).split())
        return cls(
            date_from=_date(hostile.query_text(query, "from", max_length=10)),
            date_to=_date(hostile.query_text(query, "to", max_length=10)),
            agent=hostile.query_text(query, "agent").strip(),
            action=hostile.query_text(query, "action").strip(),
            status=status if status in Decision.Status.values else "",
            reviewer=hostile.query_text(query, "reviewer", max_length=150).strip(),
            text=text[:TEXT_MAX] if len(text) >= TEXT_MIN else "",
        )

    def as_query(self) -> dict[str, str]:
        """The filters as URL parameters (also what an export's audit event records)."""
        query = {
            "from": self.date_from.isoformat() if self.date_from else "",
            "to": self.date_to.isoformat() if self.date_to else "",
            "agent": self.agent,
            "action": self.action,
            "status": self.status,
            "reviewer": self.reviewer,
            "q": self.text,
        }
        return {name: value for name, value in query.items() if value}


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def filtered_decisions(filters: TrailFilters) -> QuerySet[Decision]:
    queryset = Decision.objects.all()
    if filters.date_from:
        queryset = queryset.filter(created_at__gte=_start_of(filters.date_from))
    if filters.date_to and filters.date_to < date.max:
        queryset = queryset.filter(created_at__lt=_start_of(filters.date_to + timedelta(days=1)))
    if filters.agent:
        queryset = queryset.filter(agent__slug=filters.agent)
    if filters.action:
        queryset = queryset.filter(action_type__key=filters.action)
    if filters.status:
        queryset = queryset.filter(status=filters.status)
    if filters.reviewer:
        reviewer_id = (
            get_user_model()
            .objects.filter(username=filters.reviewer)
            .values_list("pk", flat=True)
            .first()
        )
        if reviewer_id is None:
            return queryset.none()
        queryset = queryset.filter(
            Exists(Review.objects.filter(decision_id=OuterRef("pk"), reviewer_id=reviewer_id))
        )
    if filters.text:
        queryset = queryset.filter(reasoning__icontains=filters.text)
    return queryset


# --- keyset order: newest first --------------------------------------------------------


def encode_cursor(created_at: datetime, pk: UUID) -> str:
    raw = f"{created_at.isoformat()}|{pk}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created_text, id_text = raw.split("|")
        created_at, pk = datetime.fromisoformat(created_text), UUID(id_text)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("invalid cursor") from None
    if created_at.tzinfo is None:
        raise ValueError("invalid cursor")
    return created_at, pk


def _older_than(queryset: QuerySet[Decision], created_at: datetime, pk: UUID) -> QuerySet:
    """Rows after (created_at, pk) in (created_at desc, id desc) order.

    Written as a range plus an exclusion rather than an OR, so that the range is an
    index condition and a deep page does not re-read the pages before it.
    """
    return queryset.filter(created_at__lte=created_at).exclude(created_at=created_at, pk__gte=pk)


NEWEST_FIRST = ["-created_at", "-id"]


@dataclass(frozen=True)
class SearchPage:
    decisions: list[Decision]
    next_cursor: str | None


class SearchTooSlow(Exception):
    """A free-text search ran past TEXT_SEARCH_TIMEOUT_MS."""


def _search_rows(queryset: QuerySet[Decision], size: int) -> list[Decision]:
    return list(
        queryset.select_related("agent", "action_type")
        .prefetch_related(
            Prefetch(
                "reviews",
                queryset=Review.objects.select_related("reviewer").order_by("created_at", "id"),
            )
        )
        .order_by(*NEWEST_FIRST)[: size + 1]
    )


def search_page(*, filters: TrailFilters, cursor: str = "", size: int | None = None) -> SearchPage:
    """One page of matching decisions, newest first, by keyset whatever the depth.

    A free-text filter has no index to use and may scan the whole table: on
    PostgreSQL it gets TEXT_SEARCH_TIMEOUT_MS, then SearchTooSlow.
    """
    size = size or SEARCH_PAGE
    queryset = filtered_decisions(filters)
    if cursor:
        queryset = _older_than(queryset, *decode_cursor(cursor))
    if filters.text and connection.vendor == "postgresql":
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL statement_timeout = %s", [TEXT_SEARCH_TIMEOUT_MS])
                rows = _search_rows(queryset, size)
        except OperationalError as exc:
            if getattr(exc.__cause__, "sqlstate", "") == QUERY_CANCELED:
                raise SearchTooSlow from None
            raise
    else:
        rows = _search_rows(queryset, size)
    more = len(rows) > size
    rows = rows[:size]
    last = rows[-1] if more and rows else None
    return SearchPage(rows, encode_cursor(last.created_at, last.pk) if last else None)


COUNT_CAP = 10_000


def match_count(*, filters: TrailFilters, cap: int = COUNT_CAP) -> int | None:
    """How many decisions match, exact up to `cap`; cap + 1 means "more than cap". The
    count stops at cap + 1 rows, so it costs at most that many. None when a free-text
    count runs out of time on PostgreSQL."""
    limited = filtered_decisions(filters).order_by().values("pk")[: cap + 1]
    if filters.text and connection.vendor == "postgresql":
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL statement_timeout = %s", [TEXT_SEARCH_TIMEOUT_MS])
                return limited.count()
        except OperationalError as exc:
            if getattr(exc.__cause__, "sqlstate", "") == QUERY_CANCELED:
                return None
            raise
    return limited.count()


def search_choices() -> dict[str, list]:
    return {
        "agents": list(Agent.objects.order_by("slug").values_list("slug", "name")),
        "actions": list(ActionType.objects.order_by("key").values_list("key", "name")),
        "statuses": Decision.Status.choices,
    }


# --- one decision's trail ---------------------------------------------------------------


@dataclass(frozen=True)
class Trail:
    decision: Decision
    events: list[AuditEvent]
    attempts: list[ReleaseAttempt]


def decision_trail(*, decision_id) -> Trail | None:
    decision = (
        Decision.objects.select_related("agent", "action_type", "decided_by")
        .prefetch_related(
            Prefetch(
                "reviews",
                queryset=Review.objects.select_related("reviewer").order_by("created_at", "id"),
            )
        )
        .filter(pk=decision_id)
        .first()
    )
    if decision is None:
        return None
    return Trail(
        decision=decision,
        events=list(audit_events_for(target=decision)),
        attempts=list(decision.attempts.order_by("number")),
    )


# --- exports ------------------------------------------------------------------------------

EXPORT_FIELDS = [
    "id",
    "created_at",
    "agent__slug",
    "behaviour_version",
    "action_type__key",
    "summary",
    "params_json",
    "evidence_json",
    "reasoning",
    "confidence",
    "policy_outcome",
    "policy_rule",
    "policy_explanation",
    "required_approvals",
    "status",
    "approved_params_json",
    "decided_at",
    "released_at",
    "release_result_json",
    "canary",
]
# JSON columns are read as the database's JSON text: the export re-spaces that text
# instead of decoding and re-encoding every document.
JSON_TEXT = {
    f"{name}_json": Cast(name, TextField())
    for name in ("params", "evidence", "approved_params", "release_result")
}


@dataclass(frozen=True)
class ExportChunk:
    """Up to EXPORT_CHUNK decisions as value tuples in EXPORT_FIELDS order (JSON
    columns as JSON text, None for NULL), the reviews of each one ([(username,
    verdict, comment)], oldest first), and the hash of each one's latest sealed audit
    event, by decision id as text."""

    rows: list[tuple]
    reviews: dict[UUID, list[tuple[str, str, str]]]
    audit_hashes: dict[str, str]


def _one_of(field: str, values: list[str], db_type: str) -> Q | Func:
    """`field IN values`. PostgreSQL gets the list as one array parameter: nothing to
    build per value, and the planner probes the index for each one."""
    if connection.vendor != "postgresql":
        return Q(**{f"{field}__in": values})
    return Func(
        F(field),
        Value("{" + ",".join(values) + "}"),
        arg_joiner=" = ANY(",
        template=f"%(expressions)s::{db_type}[])",
        output_field=BooleanField(),
    )


def _latest_sealed_hashes(ids: list[str]) -> dict[str, str]:
    events = AuditEvent.objects.filter(
        _one_of("target_id", ids, "varchar"), target_type=DECISION_TARGET, seq__isnull=False
    )
    if connection.features.can_distinct_on_fields:
        latest = events.order_by("target_id", "-seq").distinct("target_id")
        return dict(latest.values_list("target_id", "hash"))
    # Elsewhere: every sealed event of the chunk, in seq order; the last one wins.
    return dict(events.order_by("target_id", "seq").values_list("target_id", "hash"))


def _reviews(ids: list[str]) -> dict[UUID, list[tuple[str, str, str, str | None]]]:
    """Each decision's reviews: (username, verdict, comment, passkey credential id or None)."""
    reviews = defaultdict(list)
    for decision_id, *review in (
        Review.objects.filter(_one_of("decision_id", ids, "uuid"))
        .order_by("decision_id", "created_at", "id")
        .values_list(
            "decision_id", "reviewer__username", "verdict", "comment", "signature__credential_id"
        )
    ):
        reviews[decision_id].append(tuple(review))
    return reviews


def export_chunks(*, filters: TrailFilters, size: int | None = None) -> Iterator[ExportChunk]:
    """Every matching decision, newest first, in keyset chunks: three queries a chunk,
    and memory bounded by the chunk size whatever the total."""
    size = size or EXPORT_CHUNK
    matching = filtered_decisions(filters).order_by(*NEWEST_FIRST)
    after = None
    while True:
        chunk = matching if after is None else _older_than(matching, *after)
        rows = list(chunk.annotate(**JSON_TEXT).values_list(*EXPORT_FIELDS)[:size])
        if not rows:
            return
        ids = [str(row[0]) for row in rows]
        yield ExportChunk(rows, _reviews(ids), _latest_sealed_hashes(ids))
        if len(rows) < size:
            return
        after = (rows[-1][1], rows[-1][0])


EVENT_FIELDS = [
    "id",
    "seq",
    "created_at",
    "event",
    "actor_kind",
    "actor_label",
    "actor_user_id",  # the event hash covers it: offline verification needs it
    "target_type",
    "target_id",
    "data",
    "prev_hash",
    "hash",
]


def export_event_chunks(*, filters: TrailFilters, size: int | None = None) -> Iterator[list[dict]]:
    """The audit events (EVENT_FIELDS) of every matching decision, a chunk of decisions
    at a time, newest decisions first; within a chunk, events in id order."""
    size = size or EXPORT_CHUNK
    ids = filtered_decisions(filters).order_by(*NEWEST_FIRST).values_list("id", "created_at")
    after = None
    while True:
        page = ids if after is None else _older_than(ids, *after)
        rows = list(page[:size])
        if not rows:
            return
        yield list(
            AuditEvent.objects.filter(
                target_type=DECISION_TARGET, target_id__in=[str(pk) for pk, _ in rows]
            )
            .order_by("id")
            .values(*EVENT_FIELDS)
        )
        if len(rows) < size:
            return
        after = (rows[-1][1], rows[-1][0])


def export_events(*, user, limit: int = 10) -> list[AuditEvent]:
    return list(
        AuditEvent.objects.filter(event="audit.exported", actor_user=user).order_by("-id")[:limit]
    )


def export_event(*, event_id: int) -> AuditEvent | None:
    return AuditEvent.objects.filter(pk=event_id, event="audit.exported").first()
