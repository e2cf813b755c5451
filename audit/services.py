import json
import multiprocessing
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction
from django.utils import timezone

from .chainhash import (  # noqa: F401 - re-exported: the chain's hashing lives there
    GENESIS,
    canonical_data_from_json,
    canonical_event,
    event_hash,
)
from .models import AuditArchive, AuditEvent, AuditVerification


class AuditOutsideTransaction(RuntimeError):
    """Raised when a write service forgets to record inside its transaction."""


def _actor_fields(actor: Any) -> dict:
    if actor is None:
        return {"actor_kind": AuditEvent.ActorKind.SYSTEM, "actor_label": "system"}
    if isinstance(actor, str):
        return {"actor_kind": AuditEvent.ActorKind.SYSTEM, "actor_label": actor}
    label = actor._meta.label
    if label == settings.AUTH_USER_MODEL:
        return {
            "actor_kind": AuditEvent.ActorKind.USER,
            "actor_label": actor.get_username(),
            "actor_user": actor,
        }
    return {
        "actor_kind": AuditEvent.ActorKind.AGENT,
        "actor_label": str(getattr(actor, "slug", actor)),
    }


def _jsonable(data: dict) -> dict:
    return json.loads(json.dumps(data, cls=DjangoJSONEncoder))


def audit_record(
    *,
    event: str,
    actor: Any = None,
    target: models.Model | None = None,
    data: dict | None = None,
) -> AuditEvent:
    """Append one audit event. Callers must already be inside their write's transaction.

    `actor` is a user, an agent, a system label (a string) or None for the system.
    """
    if not transaction.get_connection().in_atomic_block:
        raise AuditOutsideTransaction(
            f"audit_record({event!r}) must run inside the transaction of the change it records"
        )
    return AuditEvent.objects.create(
        **audit_fields(event=event, actor=actor, target=target, data=data)
    )


def audit_fields(
    *, event: str, actor: Any = None, target: models.Model | None = None, data: dict | None = None
) -> dict:
    """The fields of the event audit_record would insert (the sealer fills in the rest).

    For a write that inserts its audit event in the same SQL statement as the change
    (approvals.services.ingest): one statement is one transaction, so the event is
    still written if and only if the change is.
    """
    return {
        "created_at": timezone.now(),
        "event": event,
        "target_type": target._meta.label_lower if target is not None else "",
        "target_id": str(target.pk) if target is not None else "",
        "data": _jsonable(data or {}),
        **_actor_fields(actor),
    }


def audit_row(
    *,
    event: str,
    target: models.Model | None = None,
    data: dict | None = None,
    actor: Any = None,
    created_at=None,
) -> dict:
    """The columns and values of the event `audit_record` would insert, for a service that
    inserts it in the same SQL statement as the change it records (one round trip). That
    statement is its own transaction, or part of the caller's: the event still commits
    or rolls back with the change. `data` is JSON text, for a `::jsonb` placeholder."""
    actor_fields = _actor_fields(actor)
    user = actor_fields.pop("actor_user", None)
    return {
        "created_at": created_at or timezone.now(),
        "event": event,
        "target_type": target._meta.label_lower if target is not None else "",
        "target_id": str(target.pk) if target is not None else "",
        # The text audit_record's JSONField would store, encoded once.
        "data": json.dumps(data or {}, cls=DjangoJSONEncoder),
        **actor_fields,
        "actor_user_id": user.pk if user is not None else None,
        "prev_hash": "",
        "hash": "",
    }


# --- the hash chain ------------------------------------------------------------------

SEAL_LOCK = 0x61697370  # pg advisory lock key: one sealer at a time


CHAIN_FIELDS = [
    "id",
    "seq",
    "created_at",
    "event",
    "actor_kind",
    "actor_label",
    "actor_user_id",
    "target_type",
    "target_id",
    "data",
    "prev_hash",
    "hash",
]


def audit_seal(*, limit: int = 10000) -> int:
    """Chain committed, unsealed events onto the head; return how many.

    Writers insert events unsealed, so they never wait on each other for the
    chain. The sealer gives each event the next seq, the head's hash as its
    prev_hash, and its own hash. One sealer runs at a time (an advisory lock on
    PostgreSQL; SQLite has one writer anyway) and reads the head under that
    lock, so the chain cannot fork; an event that commits after a run is sealed
    by the next one, after the head, so none is skipped.
    """
    connection = transaction.get_connection()
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [SEAL_LOCK])
        unsealed = AuditEvent.objects.filter(seq__isnull=True)
        head = (
            AuditEvent.objects.filter(seq__isnull=False)
            .order_by("-seq")
            .values("seq", "hash")
            .first()
        )
        seq, prev = (head["seq"], head["hash"]) if head else (0, GENESIS)
        rows = list(unsealed.order_by("id").values(*CHAIN_FIELDS)[:limit])
        updates = []
        for row in rows:
            seq += 1
            row["seq"] = seq
            digest = event_hash(row, prev)
            updates.append((seq, prev, digest, row["id"]))
            prev = digest
        if updates:
            # The sealer's one permitted write (the trigger allows nothing else),
            # sent as one batch rather than a statement per event.
            with connection.cursor() as cursor:
                cursor.executemany(
                    f'UPDATE "{AuditEvent._meta.db_table}" SET seq = %s, prev_hash = %s, '
                    "hash = %s WHERE id = %s AND seq IS NULL",
                    updates,
                )
    return len(rows)


def audit_seal_all() -> int:
    """Seal everything that has committed, in batches; return how many were sealed."""
    sealed = 0
    while batch := audit_seal():
        sealed += batch
    return sealed


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    events_checked: int
    head_seq: int | None
    head_hash: str
    first_broken_id: int | None = None
    problem: str = ""
    anchor: str = ""  # how checkpoints anchor the chain (audit.checkpoints)


_FAST_ROWS = """
    SELECT id, seq, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           event, actor_kind, actor_label, actor_user_id, target_type, target_id, data::text,
           prev_hash, hash
    FROM audit_auditevent WHERE seq >= %s AND seq < %s ORDER BY seq
"""


def _chain_rows_postgresql(*, start_seq: int, batch: int, end_seq: int | None = None):
    """Sealed events in seq order, read as text in seq ranges: the database formats the
    timestamp and JSON is decoded straight into canonical form (floats as text), which
    is what the ORM path computes, at a fraction of the cost."""
    connection = transaction.get_connection()
    last = end_seq
    if last is None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT max(seq) FROM audit_auditevent")
            (last,) = cursor.fetchone()
    if last is None:
        return
    low = start_seq
    while low <= last:
        with connection.cursor() as cursor:
            cursor.execute(_FAST_ROWS, [low, min(low + batch, last + 1)])
            fetched = cursor.fetchall()
        for values in fetched:
            row = dict(zip(CHAIN_FIELDS, values, strict=True))
            row["data"] = canonical_data_from_json(row["data"])
            row["canonical"] = True
            yield row
        low += batch


def chain_start() -> tuple[int, str]:
    """Where the chain in the database begins: seq 1 from GENESIS, or just after the
    newest archived run, from that run's head hash."""
    archive = AuditArchive.objects.order_by("-last_seq").values("last_seq", "head_hash").first()
    return (archive["last_seq"] + 1, archive["head_hash"]) if archive else (1, GENESIS)


def chain_verify(*, from_id: int | None = None, batch: int = 20000) -> ChainReport:
    """Recompute the chain in seq order and report the first broken event.

    A broken event is one whose hash does not match its content (hash mismatch),
    whose prev_hash is not the previous event's hash (broken link), or whose seq
    does not follow the previous one (gap).
    """
    events = AuditEvent.objects.filter(seq__isnull=False).order_by("seq")
    expected_seq, prev = chain_start()
    if from_id is not None:
        start = AuditEvent.objects.filter(pk=from_id, seq__isnull=False).values("seq").first()
        if start is None:
            return ChainReport(False, 0, None, "", from_id, "no sealed event has this id")
        events = events.filter(seq__gte=start["seq"])
        expected_seq, prev = start["seq"], None
    rows = (
        _chain_rows_postgresql(start_seq=expected_seq, batch=batch)
        if transaction.get_connection().vendor == "postgresql"
        else events.values(*CHAIN_FIELDS).iterator(chunk_size=batch)
    )
    return _walk(rows, expected_seq=expected_seq, prev=prev)[0]


def _walk(rows, *, expected_seq: int, prev: str | None) -> tuple[ChainReport, dict | None]:
    """Check events in seq order; also return the first one (for joining ranges)."""
    checked, head_seq, head_hash, first = 0, None, "", None
    for row in rows:
        if first is None:
            first = {"id": row["id"], "seq": row["seq"], "prev_hash": row["prev_hash"]}
        problem = ""
        if row["seq"] != expected_seq:
            problem = f"gap: expected seq {expected_seq}, found {row['seq']}"
        elif prev is not None and row["prev_hash"] != prev:
            problem = "broken link: prev_hash is not the previous event's hash"
        elif event_hash(row, row["prev_hash"]) != row["hash"]:
            problem = "hash mismatch: the event's content does not match its hash"
        if problem:
            return ChainReport(False, checked, head_seq, head_hash, row["id"], problem), first
        checked += 1
        expected_seq, prev = row["seq"] + 1, row["hash"]
        head_seq, head_hash = row["seq"], row["hash"]
    return ChainReport(True, checked, head_seq, head_hash), first


def _verify_range(bounds: tuple[int, int, int]) -> tuple[ChainReport, dict | None]:
    """One worker process's share: seq start..end, anchored on its first event."""
    from django.db import connections

    start, end, batch = bounds
    try:
        rows = _chain_rows_postgresql(start_seq=start, end_seq=end, batch=batch)
        return _walk(rows, expected_seq=start, prev=None)
    finally:
        connections.close_all()


def chain_verify_parallel(*, workers: int, batch: int = 20000) -> ChainReport:
    """chain_verify split over seq ranges in `workers` processes (PostgreSQL only).

    Each process checks its range anchored on the range's first prev_hash; the
    joins between ranges are then checked here, so the result, including the first
    broken event, is the same as a single pass.
    """
    connection = transaction.get_connection()
    if workers <= 1 or connection.vendor != "postgresql" or connection.in_atomic_block:
        return chain_verify(batch=batch)
    with connection.cursor() as cursor:
        cursor.execute("SELECT max(seq) FROM audit_auditevent")
        (last,) = cursor.fetchone()
    start, start_prev = chain_start()
    if not last or last - start + 1 < workers * batch:
        return chain_verify(batch=batch)
    step = -(-(last - start + 1) // workers)
    ranges = [(low, min(low + step - 1, last), batch) for low in range(start, last + 1, step)]
    from django.db import connections

    connections.close_all()  # children must open their own connections
    with multiprocessing.get_context("fork").Pool(len(ranges)) as pool:
        results = pool.map(_verify_range, ranges)
    checked, head_seq, head_hash = 0, start - 1, start_prev
    for report, first in results:
        if first is not None and first["seq"] != head_seq + 1:
            problem = f"gap: expected seq {head_seq + 1}, found {first['seq']}"
            return ChainReport(False, checked, head_seq or None, head_hash, first["id"], problem)
        if first is not None and first["prev_hash"] != head_hash:
            problem = "broken link: prev_hash is not the previous event's hash"
            return ChainReport(False, checked, head_seq or None, head_hash, first["id"], problem)
        if not report.ok:
            return ChainReport(
                False,
                checked + report.events_checked,
                report.head_seq,
                report.head_hash,
                report.first_broken_id,
                report.problem,
            )
        # A range that ends early leaves a gap the next range's first event shows.
        checked += report.events_checked
        if report.head_seq is not None:
            head_seq, head_hash = report.head_seq, report.head_hash
    return ChainReport(True, checked, head_seq or None, head_hash if checked else "")


def audit_verification_record(*, report: ChainReport, duration_ms: int) -> AuditVerification:
    with transaction.atomic():
        verification = AuditVerification.objects.create(
            ran_at=timezone.now(),
            ok=report.ok,
            events_checked=report.events_checked,
            head_seq=report.head_seq,
            head_hash=report.head_hash,
            first_broken_id=report.first_broken_id,
            problem=report.problem,
            duration_ms=duration_ms,
        )
        audit_record(
            event="audit.verified" if report.ok else "audit.verification_failed",
            target=verification,
            data={
                "events_checked": report.events_checked,
                "head_hash": report.head_hash,
                "first_broken_id": report.first_broken_id,
                "problem": report.problem,
            },
        )
    return verification
