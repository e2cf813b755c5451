"""Auditor exports: decision trails as CSV, raw audit events as JSON Lines, and the
manifest of each export.

Both exports stream at constant memory, a keyset chunk of decisions at a time, and
each records an `audit.exported` event when its stream ends: the filter, the row
count, the SHA-256 of the exact bytes sent and the chain head the export was read at.
"""

import csv
import hashlib
import json
import logging
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from django.db import transaction
from django.http import Http404, HttpRequest, JsonResponse, StreamingHttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from aispm_site.roles import AUDIT_PERMISSION, permission_required
from audit.selectors import chain_head, covering_checkpoint_record
from audit.services import audit_record, audit_seal_all

from . import selectors as trail_selectors
from .selectors import TrailFilters

log = logging.getLogger(__name__)
audit_required = permission_required(AUDIT_PERMISSION)

CSV_COLUMNS = [
    "decision_id",
    "submitted_at",
    "agent",
    "behaviour_version",
    "action",
    "summary",
    "params",
    "evidence",
    "reasoning",
    "confidence",
    "policy_outcome",
    "policy_rule",
    "policy_explanation",
    "required_approvals",
    "status",
    "reviewers",
    "review_verdicts",
    "review_comments",
    # Per review, in the reviewers' order: whether a passkey signed it, and which one.
    "review_signed",
    "review_credentials",
    "approved_params",
    "decided_at",
    "released_at",
    "release_result",
    # A synthetic decision that tests reviewers (issue 17): never released, and left out
    # of the posture report's agent figures, which count the rows where this is false.
    "canary",
    "audit_hash",
]
# A spreadsheet runs a cell that starts with one of these as a formula (or DDE).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
REVIEW_SEPARATOR = " | "


def neutralise(cell: str) -> str:
    return "'" + cell if cell.startswith(FORMULA_TRIGGERS) else cell


def utc_iso(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def compact_json(value) -> str:
    if value is None:
        return ""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def compact_json_text(text: str | None) -> str:
    """JSON text as compact JSON, like compact_json(json.loads(text)).

    Databases write JSON with ", " and ": " between items and no other whitespace
    outside strings. When no quote is escaped, every quote opens or closes a string,
    so the spaces can be dropped from the stretches between strings without decoding
    the document; \\u escapes (non-ASCII text kept as escapes) take the slow path.
    """
    if text is None:
        return ""
    if '\\"' in text or "\\u" in text:
        return compact_json(json.loads(text))
    parts = text.split('"')
    parts[::2] = [part.replace(", ", ",").replace(": ", ":") for part in parts[::2]]
    return '"'.join(parts)


def _text(value) -> str:
    return "" if value is None else str(value)


class _Sink:
    """The file csv.writer writes to: it keeps the text until the stream drains it."""

    def __init__(self):
        self.parts: list[str] = []

    def write(self, text: str) -> None:
        self.parts.append(text)

    def drain(self) -> bytes:
        data = "".join(self.parts).encode()
        self.parts.clear()
        return data


def csv_parts(filters: TrailFilters) -> Iterator[tuple[bytes, int]]:
    """The CSV as (bytes, decision rows in them): the header, then one part per chunk."""
    sink = _Sink()
    writer = csv.writer(sink)
    writer.writerow(CSV_COLUMNS)
    yield sink.drain(), 0
    for chunk in trail_selectors.export_chunks(filters=filters):
        reviews, hashes = chunk.reviews, chunk.audit_hashes
        for (
            pk,
            created_at,
            agent,
            behaviour_version,
            action,
            summary,
            params,
            evidence,
            reasoning,
            confidence,
            policy_outcome,
            policy_rule,
            policy_explanation,
            required_approvals,
            status,
            approved_params,
            decided_at,
            released_at,
            release_result,
            canary,
        ) in chunk.rows:
            decision_reviews = reviews.get(pk, ())
            decision_id = str(pk)
            cells = (
                decision_id,
                utc_iso(created_at),
                agent,
                _text(behaviour_version),
                action,
                summary,
                compact_json_text(params),
                compact_json_text(evidence),
                reasoning,
                _text(confidence),
                policy_outcome,
                policy_rule,
                policy_explanation,
                _text(required_approvals),
                status,
                REVIEW_SEPARATOR.join([review[0] for review in decision_reviews]),
                REVIEW_SEPARATOR.join([review[1] for review in decision_reviews]),
                REVIEW_SEPARATOR.join([review[2] for review in decision_reviews]),
                REVIEW_SEPARATOR.join(
                    ["true" if review[3] else "false" for review in decision_reviews]
                ),
                REVIEW_SEPARATOR.join([review[3] or "" for review in decision_reviews]),
                compact_json_text(approved_params),
                utc_iso(decided_at),
                utc_iso(released_at),
                compact_json_text(release_result),
                "true" if canary else "false",
                hashes.get(decision_id, ""),
            )
            writer.writerow([neutralise(cell) for cell in cells])
        yield sink.drain(), len(chunk.rows)


def jsonl_parts(filters: TrailFilters) -> Iterator[tuple[bytes, int]]:
    """The audit events of the filtered decisions, one compact JSON object a line."""
    for events in trail_selectors.export_event_chunks(filters=filters):
        lines = []
        for event in events:
            event["created_at"] = utc_iso(event["created_at"])
            lines.append(compact_json(event))
            lines.append("\n")
        yield "".join(lines).encode(), len(events)


def _record_export(*, user, export: dict) -> None:
    try:
        with transaction.atomic():
            audit_record(event="audit.exported", actor=user, data=export)
    except Exception:
        # The stream is over either way; a lost export record must at least be loud.
        log.exception("could not record the audit event of an export: %s", export)


def _audited(parts: Iterable[tuple[bytes, int]], *, user, export: dict) -> Iterator[bytes]:
    """Stream `parts`, hashing every byte, and record the export once it ends, whether
    it ran to the end or the client went away (then `complete` is false)."""
    digest = hashlib.sha256()
    rows = size = 0
    complete = False
    try:
        for data, count in parts:
            digest.update(data)
            rows += count
            size += len(data)
            yield data
        complete = True
    finally:
        _record_export(
            user=user,
            export={
                **export,
                "rows": rows,
                "bytes": size,
                "sha256": digest.hexdigest(),
                "complete": complete,
            },
        )


def _seal_and_read_head() -> tuple[int | None, str]:
    """Seal what has committed, so that recent events carry hashes, then read the head."""
    audit_seal_all()
    head = chain_head()
    return (head.seq, head.hash) if head else (None, "")


def _export_response(
    request: HttpRequest, *, export_format: str, content_type: str, name: str, parts
) -> StreamingHttpResponse:
    filters = TrailFilters.from_query(request.GET)
    head_seq, head_hash = _seal_and_read_head()
    exported_at = timezone.now()
    export = {
        "format": export_format,
        "filter": filters.as_query(),
        "chain_head_seq": head_seq,
        "chain_head_hash": head_hash,
        "exported_at": utc_iso(exported_at),
    }
    response = StreamingHttpResponse(
        _audited(parts(filters), user=request.user, export=export), content_type=content_type
    )
    stamp = exported_at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    response["Content-Disposition"] = f'attachment; filename="{name}-{stamp}.{export_format}"'
    response["Cache-Control"] = "no-store"
    return response


@require_GET
@audit_required
def export_csv(request: HttpRequest) -> StreamingHttpResponse:
    return _export_response(
        request,
        export_format="csv",
        content_type="text/csv; charset=utf-8",
        name="aispm-decisions",
        parts=csv_parts,
    )


@require_GET
@audit_required
def export_jsonl(request: HttpRequest) -> StreamingHttpResponse:
    return _export_response(
        request,
        export_format="jsonl",
        content_type="application/jsonl; charset=utf-8",
        name="aispm-audit-events",
        parts=jsonl_parts,
    )


@require_GET
@audit_required
def export_manifest(request: HttpRequest, event_id: int) -> JsonResponse:
    event = trail_selectors.export_event(event_id=event_id)
    if event is None:
        raise Http404("No such export.")
    data = event.data
    manifest = {
        "filter": data.get("filter", {}),
        "format": data.get("format", ""),
        "rows": data.get("rows"),
        "sha256": data.get("sha256", ""),
        "chain_head_hash": data.get("chain_head_hash", ""),
        "chain_head_seq": data.get("chain_head_seq"),
        "checkpoint": covering_checkpoint_record(seq=data.get("chain_head_seq")),
        "exported_at": data.get("exported_at", ""),
        "exported_by": event.actor_label,
    }
    response = JsonResponse(manifest, json_dumps_params={"indent": 2, "ensure_ascii": False})
    response["Content-Disposition"] = (
        f'attachment; filename="aispm-export-{event.pk}-manifest.json"'
    )
    response["Cache-Control"] = "no-store"
    return response
