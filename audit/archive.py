"""Retention: move the oldest run of the chain into a compressed, verified segment.

`audit_archive` writes events from the chain's start up to a checkpoint older than
the cut-off as gzip-compressed JSON Lines with a manifest and the covering
checkpoint, reads the file back and verifies it, and only then, in one
transaction, records the archive (which is what lets PostgreSQL's trigger delete
that run), deletes the rows and appends an `audit.archived` tombstone event with the
segment's hash. The chain in the database then starts from the segment's head hash.
"""

import json
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from . import chainhash, checkpoints, offline_verify, segments, services
from .models import AuditArchive, AuditCheckpoint, AuditEvent


class ArchiveError(RuntimeError):
    """The archive was refused or its segment did not verify; no row was removed."""


def retention_cutoff(*, now: datetime | None = None) -> datetime:
    return (now or timezone.now()) - timedelta(days=settings.AISPM_AUDIT_RETENTION_DAYS)


def _directory(url: str) -> Path:
    parts = urlsplit(url)
    if parts.scheme != "file" or not parts.path:
        raise ArchiveError(f"archives go to a file:///directory/ URL (got {url!r})")
    return Path(unquote(parts.path))


def segment_name(first_seq: int, last_seq: int) -> str:
    return f"segment-{first_seq:020d}-{last_seq:020d}.jsonl.gz"


def archivable_checkpoint(*, before: datetime) -> AuditCheckpoint | None:
    """The newest checkpoint all of whose events, from the chain's start, are older
    than `before`: archives end at a signed head."""
    start, _ = services.chain_start()
    newer = (
        AuditEvent.objects.filter(seq__isnull=False, seq__gte=start, created_at__gte=before)
        .order_by("seq")
        .values_list("seq", flat=True)
        .first()
    )
    candidates = AuditCheckpoint.objects.filter(last_seq__gte=start)
    if newer is not None:
        candidates = candidates.filter(last_seq__lt=newer)
    return candidates.order_by("-last_seq").first()


def segment_problem(path: Path, manifest: dict, *, first_seq: int, prev_hash: str) -> str:
    """Read a written segment back: '' when it holds exactly the chain it claims."""
    try:
        events = offline_verify.read_events(path)
        offline_verify.check_manifest(segments.manifest_path(path), path)
        checkpoint = manifest["checkpoint"]
        if checkpoint is None or checkpoint["last_seq"] != manifest["last_seq"]:
            return "no checkpoint ends at the segment's last event"
        anchored, unanchored = offline_verify.verify(events, [checkpoint])
    except offline_verify.Tampered as exc:
        return str(exc)
    except (OSError, ValueError, KeyError) as exc:
        return f"unreadable: {exc}"
    if unanchored or anchored != len(events) or len(events) != manifest["events"]:
        return "the segment is not one contiguous run ending at its checkpoint"
    if events[0]["seq"] != first_seq or events[0]["prev_hash"] != prev_hash:
        return f"the segment does not start the chain at seq {first_seq}"
    return ""


def audit_archive(*, before: datetime, url: str, actor=None) -> AuditArchive | None:
    """Archive the chain's oldest run older than `before`; None when there is none."""
    cutoff = retention_cutoff()
    if before > cutoff:
        raise ArchiveError(
            f"events younger than {settings.AISPM_AUDIT_RETENTION_DAYS} days are kept "
            f"(AISPM_AUDIT_RETENTION_DAYS): --before must be on or before {cutoff:%Y-%m-%d}"
        )
    directory = _directory(url)
    if checkpoints.signing_key() is None:
        raise ArchiveError("archives end at a signed checkpoint: set AISPM_AUDIT_SIGNING_KEY")
    services.audit_seal_all()
    checkpoint = archivable_checkpoint(before=before)
    if checkpoint is None:
        return None
    first_seq, prev_hash = services.chain_start()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / segment_name(first_seq, checkpoint.last_seq)
    try:
        manifest = segments.segment_write(
            path=path, first_seq=first_seq, last_seq=checkpoint.last_seq, compress=True
        )
    except (segments.SegmentError, FileExistsError) as exc:
        raise ArchiveError(str(exc)) from None
    problem = segment_problem(path, manifest, first_seq=first_seq, prev_hash=prev_hash)
    if problem:
        raise ArchiveError(f"{path} did not verify, so nothing was removed: {problem}")
    with transaction.atomic():
        archive = AuditArchive.objects.create(
            created_at=timezone.now(),
            first_seq=first_seq,
            last_seq=checkpoint.last_seq,
            events=manifest["events"],
            head_hash=checkpoint.head_hash,
            checkpoint_hash=checkpoint.hash,
            segment_sha256=manifest["events_sha256"],
            location=str(path),
        )
        connection = transaction.get_connection()
        with connection.cursor() as cursor:
            # The one DELETE the trigger allows: events inside a recorded archive.
            cursor.execute(
                f'DELETE FROM "{AuditEvent._meta.db_table}" WHERE seq BETWEEN %s AND %s',
                [first_seq, checkpoint.last_seq],
            )
            if cursor.rowcount != manifest["events"]:
                raise ArchiveError(f"expected to remove {manifest['events']} events")
        services.audit_record(
            event="audit.archived",
            actor=actor,
            target=archive,
            data={
                "first_seq": first_seq,
                "last_seq": checkpoint.last_seq,
                "events": manifest["events"],
                "segment_sha256": manifest["events_sha256"],
                "head_hash": checkpoint.head_hash,
                "checkpoint_hash": checkpoint.hash,
                "location": str(path),
            },
        )
    services.audit_seal_all()
    return archive


def archive_verify(*, url: str) -> str:
    """Check the archived segments in a directory against each other, their signed
    checkpoints and the database's archive records; '' when they hold."""
    directory = _directory(url)
    key = checkpoints.public_key()
    records = {a.last_seq: a for a in AuditArchive.objects.order_by("last_seq")}
    first_seq, prev_hash = 1, chainhash.GENESIS
    seen = set()
    for path in sorted(directory.glob("segment-*.jsonl.gz")):
        try:
            manifest = json.loads(segments.manifest_path(path).read_text())
        except (OSError, ValueError) as exc:
            return f"{path.name}: no readable manifest ({exc})"
        name = f"segment seq {manifest['first_seq']}..{manifest['last_seq']}"
        problem = segment_problem(path, manifest, first_seq=first_seq, prev_hash=prev_hash)
        if problem:
            return f"{name}: {problem}"
        checkpoint = manifest["checkpoint"]
        if key is not None and not chainhash.signature_valid(
            key, checkpoint, checkpoint["signature"]
        ):
            return f"{name}: its checkpoint's signature is invalid"
        record = records.get(manifest["last_seq"])
        if record is None or record.segment_sha256 != manifest["events_sha256"]:
            return f"{name}: the database records no such archive"
        if record.checkpoint_hash != checkpoint["hash"]:
            return f"{name}: the database's archive names another checkpoint"
        seen.add(manifest["last_seq"])
        first_seq, prev_hash = manifest["last_seq"] + 1, manifest["head_hash"]
    missing = sorted(set(records) - seen)
    if missing:
        record = records[missing[0]]
        return f"archive seq {record.first_seq}..{record.last_seq}: its segment is missing"
    return ""
