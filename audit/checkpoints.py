"""Signed checkpoints of the audit chain.

A checkpoint states that events first_seq..last_seq end in head_hash, chains to the
previous checkpoint through its hash, and is signed with the deployment's Ed25519
key. Verification holds the chain to every checkpoint, so a rewrite that recomputes
every hash, or a truncated tail, no longer passes as intact. Each checkpoint is also
written to a witness outside the database (audit.witness).
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from . import chainhash
from .models import AuditArchive, AuditCheckpoint, AuditEvent

CHECKPOINT_LOCK = 0x61697371  # pg advisory lock key: one checkpointer at a time


class CheckpointError(RuntimeError):
    """A checkpoint cannot be made (no signing key)."""


def signing_key() -> Ed25519PrivateKey | None:
    seed = settings.AISPM_AUDIT_SIGNING_KEY
    return chainhash.private_key_from_seed(seed) if seed else None


def public_key() -> Ed25519PublicKey | None:
    key = signing_key()
    return key.public_key() if key is not None else None


def key_fingerprint() -> str:
    key = public_key()
    return chainhash.fingerprint(key) if key is not None else ""


def checkpoint_create(*, publish: bool = True) -> AuditCheckpoint | None:
    """Sign a checkpoint over the events sealed since the last one; None if there are none.

    The checkpoint goes to the witness once it has committed, then any older ones the
    witness lacks (an outage kept them from it), also when there is nothing new to
    sign. A witness that fails raises, after the checkpoint is safely in the database;
    the next run catches up."""
    key = signing_key()
    if key is None:
        raise CheckpointError("no signing key: set AISPM_AUDIT_SIGNING_KEY or _FILE")
    checkpoint = _checkpoint_sign(key)
    if publish and settings.AISPM_AUDIT_WITNESS_URL:
        from . import witness

        url = settings.AISPM_AUDIT_WITNESS_URL
        if checkpoint is not None:
            witness.witness_publish(url=url, checkpoint=checkpoint)
        witness.witness_catch_up(url=url, published=checkpoint)
    return checkpoint


def _checkpoint_sign(key: Ed25519PrivateKey) -> AuditCheckpoint | None:
    connection = transaction.get_connection()
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CHECKPOINT_LOCK])
        last = AuditCheckpoint.objects.order_by("-last_seq").first()
        head = (
            AuditEvent.objects.filter(seq__isnull=False)
            .order_by("-seq")
            .values("seq", "hash")
            .first()
        )
        if head is None or (last is not None and head["seq"] <= last.last_seq):
            return None
        document = {
            "first_seq": last.last_seq + 1 if last else 1,
            "last_seq": head["seq"],
            "head_hash": head["hash"],
            "prev_hash": last.hash if last else chainhash.GENESIS,
            "created_at": timezone.now(),
            "key_fingerprint": chainhash.fingerprint(key.public_key()),
        }
        document["hash"] = chainhash.checkpoint_hash(document)
        document["signature"] = chainhash.sign(key, document)
        return AuditCheckpoint.objects.create(**document)


@dataclass(frozen=True)
class AnchorReport:
    ok: bool
    status: str  # anchored | unanchored | broken
    detail: str = ""
    checkpoint_id: int | None = None
    seq: int | None = None
    checkpoints_checked: int = 0


def _name(checkpoint: AuditCheckpoint) -> str:
    return f"checkpoint #{checkpoint.pk} (seq {checkpoint.first_seq}..{checkpoint.last_seq})"


def _broken(checkpoint: AuditCheckpoint, seq: int | None, detail: str, checked: int):
    return AnchorReport(
        False, "broken", f"{_name(checkpoint)}: {detail}", checkpoint.pk, seq, checked
    )


def _hashes_at(seqs: list[int]) -> dict[int, str]:
    found = {}
    for low in range(0, len(seqs), 5000):
        found.update(
            AuditEvent.objects.filter(seq__in=seqs[low : low + 5000]).values_list("seq", "hash")
        )
    return found


def stale_after() -> timedelta:
    return timedelta(seconds=2 * settings.AISPM_AUDIT_CHECKPOINT_SECONDS)


def checkpoint_problem(
    checkpoint: AuditCheckpoint, *, key: Ed25519PublicKey, prev_hash: str, first_seq: int
) -> str:
    """What is wrong with one checkpoint on its own and as the next in its chain."""
    document = checkpoint.as_document()
    if chainhash.checkpoint_hash(document) != checkpoint.hash:
        return "the checkpoint chain is broken: its content does not match its hash"
    if checkpoint.prev_hash != prev_hash or checkpoint.first_seq != first_seq:
        return "the checkpoint chain is broken: it does not follow the previous checkpoint"
    if checkpoint.key_fingerprint != chainhash.fingerprint(key) or not chainhash.signature_valid(
        key, document, checkpoint.signature
    ):
        return "invalid signature: it was not signed by the configured key"
    return ""


def checkpoints_verify(*, head_seq: int | None, now: datetime | None = None) -> AnchorReport:
    """Hold the (already verified) chain, whose head is head_seq, to every checkpoint."""
    key = public_key()
    checkpoints = list(AuditCheckpoint.objects.order_by("last_seq"))
    if key is None:
        detail = "no signing key is configured"
        if checkpoints:
            detail += f"; {len(checkpoints)} checkpoints cannot be checked"
        return AnchorReport(True, "unanchored", detail)
    now = now or timezone.now()
    if not checkpoints:
        oldest = AuditEvent.objects.filter(seq__isnull=False).order_by("seq").first()
        if oldest is not None and now - oldest.created_at > stale_after():
            return AnchorReport(
                False, "broken", f"stale: no checkpoint covers seq 1..{head_seq}", None, 1
            )
        return AnchorReport(True, "unanchored", "no checkpoint yet")
    # Archived runs end at a checkpoint; their head hashes stand in for the events.
    head_hashes = dict(AuditArchive.objects.values_list("last_seq", "head_hash"))
    archived_through = max(head_hashes, default=0)
    head_hashes.update(
        _hashes_at([c.last_seq for c in checkpoints if c.last_seq > archived_through])
    )
    prev_hash, first_seq = chainhash.GENESIS, 1
    for checked, checkpoint in enumerate(checkpoints):
        problem = checkpoint_problem(checkpoint, key=key, prev_hash=prev_hash, first_seq=first_seq)
        if problem:
            return _broken(checkpoint, checkpoint.first_seq, problem, checked)
        if checkpoint.last_seq <= archived_through and checkpoint.last_seq not in head_hashes:
            prev_hash, first_seq = checkpoint.hash, checkpoint.last_seq + 1
            continue  # inside an archived run: its segment is verified with --archive
        if head_seq is None or checkpoint.last_seq > head_seq:
            return _broken(
                checkpoint,
                checkpoint.last_seq,
                f"tail truncated: the chain ends at seq {head_seq or 0} but the checkpoint "
                f"covers seq {checkpoint.last_seq}",
                checked,
            )
        if head_hashes.get(checkpoint.last_seq) != checkpoint.head_hash:
            return _broken(
                checkpoint,
                checkpoint.last_seq,
                f"head hash mismatch at seq {checkpoint.last_seq}: the events up to it were "
                "rewritten since the checkpoint was signed",
                checked,
            )
        prev_hash, first_seq = checkpoint.hash, checkpoint.last_seq + 1
    newest = checkpoints[-1]
    if head_seq > newest.last_seq and now - newest.created_at > stale_after():
        return _broken(
            newest,
            newest.last_seq + 1,
            f"stale: seq {newest.last_seq + 1}..{head_seq} were sealed after it and no "
            f"checkpoint in {int(stale_after().total_seconds())} s covers them",
            len(checkpoints),
        )
    return AnchorReport(
        True, "anchored", _name(newest), newest.pk, newest.last_seq, len(checkpoints)
    )


def checkpoint_signature_status(checkpoint: AuditCheckpoint) -> str:
    key = public_key()
    if key is None:
        return "unverifiable: no signing key is configured"
    document = checkpoint.as_document()
    if chainhash.checkpoint_hash(document) != checkpoint.hash:
        return "invalid: the content does not match its hash"
    if checkpoint.key_fingerprint == chainhash.fingerprint(key) and chainhash.signature_valid(
        key, document, checkpoint.signature
    ):
        return "valid"
    return "invalid"


def evidence_verify(*, workers: int = 1, from_id: int | None = None):
    """The chain, then its checkpoints: one ChainReport that fails if either does."""
    from dataclasses import replace

    from . import services

    if from_id is None:
        report = services.chain_verify_parallel(workers=workers)
    else:
        report = services.chain_verify(from_id=from_id)
    if not report.ok:
        return report
    anchor = checkpoints_verify(head_seq=report.head_seq)
    if not anchor.ok:
        return replace(report, ok=False, problem=anchor.detail, anchor="broken")
    return replace(report, anchor=f"{anchor.status}: {anchor.detail}")


def audit_verification_request(*, actor) -> AuditEvent:
    """Record that `actor` asked for a verification now; the page shows it as running
    until a verification newer than this event is recorded."""
    from . import services

    with transaction.atomic():
        return services.audit_record(event="audit.verification_requested", actor=actor)
