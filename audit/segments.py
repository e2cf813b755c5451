"""Contiguous runs of the chain as JSON Lines files, with a manifest.

A segment holds events first_seq..last_seq in seq order, every field the hash
covers, and its manifest names the checkpoint that signs its last event's hash,
so that `python -m audit.offline_verify` can check it with only `cryptography`.
Archives (audit.archive) are gzip-compressed segments.
"""

import gzip
import hashlib
import json
from pathlib import Path

from django.utils import timezone

from . import chainhash
from .models import AuditCheckpoint, AuditEvent

SEGMENT_FIELDS = [
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


class SegmentError(RuntimeError):
    pass


def event_line(row: dict) -> bytes:
    row = dict(row)
    row["created_at"] = chainhash.utc_text(row["created_at"])
    return json.dumps(row, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def covering_checkpoint(*, seq: int) -> AuditCheckpoint | None:
    """The first checkpoint whose range ends at or after seq: it signs a hash that
    commits to event seq through the chain."""
    return AuditCheckpoint.objects.filter(last_seq__gte=seq).order_by("last_seq").first()


def segment_write(
    *, path: Path, first_seq: int, last_seq: int, compress: bool = False, batch: int = 5000
) -> dict:
    """Write events first_seq..last_seq to path (exclusively) and its manifest beside it;
    return the manifest."""
    if last_seq < first_seq:
        raise SegmentError(f"empty range: seq {first_seq}..{last_seq}")
    digest = hashlib.sha256()
    count = 0
    opener = gzip.open if compress else open
    with opener(path, "xb") as out:
        low = first_seq
        while low <= last_seq:
            rows = (
                AuditEvent.objects.filter(seq__gte=low, seq__lte=min(low + batch - 1, last_seq))
                .order_by("seq")
                .values(*SEGMENT_FIELDS)
            )
            for row in rows:
                if row["seq"] != first_seq + count:
                    raise SegmentError(f"gap: expected seq {first_seq + count}, found {row['seq']}")
                line = event_line(row)
                digest.update(line)
                out.write(line)
                count += 1
            low += batch
    if count != last_seq - first_seq + 1:
        raise SegmentError(f"seq {first_seq}..{last_seq} holds {count} events")
    checkpoint = covering_checkpoint(seq=last_seq)
    last = AuditEvent.objects.filter(seq=last_seq).values("hash").get()
    first = AuditEvent.objects.filter(seq=first_seq).values("prev_hash").get()
    manifest = {
        "first_seq": first_seq,
        "last_seq": last_seq,
        "events": count,
        "prev_hash": first["prev_hash"],
        "head_hash": last["hash"],
        "events_sha256": digest.hexdigest(),  # of the uncompressed lines
        "compressed": compress,
        "written_at": chainhash.utc_text(timezone.now()),
        "checkpoint": (
            chainhash.checkpoint_record(checkpoint.as_document()) if checkpoint else None
        ),
    }
    manifest_path(path).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def manifest_path(path: Path) -> Path:
    return path.with_name(path.name + ".manifest.json")
