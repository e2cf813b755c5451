"""Verify an audit export offline, trusting neither aispm nor its database.

    python -m audit.offline_verify export.jsonl --checkpoints DIR --public-key KEY

Needs only the standard library and `cryptography` (no Django); reading an s3://
witness directly (--checkpoints s3://bucket/prefix) needs boto3 as well. It checks
that every checkpoint in DIR (a copy of the witness) is signed by KEY and that they
chain to each other; that every exported event's hash matches its content; that
consecutive events link; and that each event reaches, through the chain, the head
hash of a signed checkpoint. Exit 0: every event verified and anchored. Exit 1:
something was altered. Exit 2: bad arguments. Exit 3: the events are intact but
some are not anchored (a filtered export that is not a contiguous run, or events
newer than any checkpoint).
"""

import argparse
import gzip
import hashlib
import json
import os
import sys
from pathlib import Path

from audit import chainhash

TAMPERED, UNANCHORED = 1, 3


class Tampered(Exception):
    pass


class WitnessUnreadable(Exception):
    pass


def read_checkpoints(source: str, *, endpoint: str = "") -> list[dict]:
    """The witness's checkpoints: a directory of checkpoint-*.json, or s3://bucket/prefix."""
    if source.startswith("s3://"):
        from audit import witness_s3

        try:
            return witness_s3.read(source, endpoint=endpoint)
        except witness_s3.S3Rewritten as exc:
            raise Tampered(str(exc)) from None
        except (witness_s3.S3ConfigError, witness_s3.S3WitnessError) as exc:
            raise WitnessUnreadable(str(exc)) from None
    return sorted(
        (json.loads(path.read_text()) for path in Path(source).glob("checkpoint-*.json")),
        key=lambda record: record["last_seq"],
    )


def load_checkpoints(directory: Path, key, *, records: list[dict] | None = None) -> list[dict]:
    if records is None:
        records = read_checkpoints(str(directory))
    fingerprint = chainhash.fingerprint(key)
    previous = None
    for record in records:
        name = f"checkpoint seq {record['first_seq']}..{record['last_seq']}"
        if chainhash.checkpoint_hash(record) != record["hash"]:
            raise Tampered(f"{name}: its content does not match its hash")
        if record["key_fingerprint"] != fingerprint or not chainhash.signature_valid(
            key, record, record["signature"]
        ):
            raise Tampered(f"{name}: invalid signature")
        if previous is not None and (
            record["prev_hash"] != previous["hash"]
            or record["first_seq"] != previous["last_seq"] + 1
        ):
            raise Tampered(f"{name}: the checkpoint chain is broken before it")
        previous = record
    return records


def read_events(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as lines:
        return sorted((json.loads(line) for line in lines if line.strip()), key=lambda e: e["seq"])


def verify(events: list[dict], checkpoints: list[dict]) -> tuple[int, list[tuple[int, int]]]:
    """Return (events anchored, unanchored seq ranges); raise Tampered."""
    heads = {record["last_seq"]: record for record in checkpoints}
    runs: list[list[dict]] = []
    previous = None
    for event in events:
        if "actor_user_id" not in event:
            raise Tampered(f"event seq {event['seq']}: the export lacks actor_user_id")
        if chainhash.event_hash(event, event["prev_hash"]) != event["hash"]:
            raise Tampered(f"event seq {event['seq']}: its content does not match its hash")
        if previous is not None and event["seq"] == previous["seq"] + 1:
            if event["prev_hash"] != previous["hash"]:
                raise Tampered(f"event seq {event['seq']}: broken link to seq {previous['seq']}")
            runs[-1].append(event)
        elif previous is not None and event["seq"] == previous["seq"]:
            raise Tampered(f"event seq {event['seq']} appears twice")
        else:
            runs.append([event])
        previous = event
    anchored, unanchored = 0, []
    for run in runs:
        # The newest checkpoint head inside the run anchors everything up to it.
        anchor_at = None
        for event in run:
            record = heads.get(event["seq"])
            if record is None:
                continue
            if record["head_hash"] != event["hash"]:
                raise Tampered(
                    f"event seq {event['seq']}: its hash is not the head hash the checkpoint "
                    f"over seq {record['first_seq']}..{record['last_seq']} signed"
                )
            anchor_at = event["seq"]
        first, last = run[0]["seq"], run[-1]["seq"]
        if anchor_at is None:
            unanchored.append((first, last))
            continue
        anchored += anchor_at - first + 1
        if anchor_at < last:
            unanchored.append((anchor_at + 1, last))
    return anchored, unanchored


def check_manifest(path: Path, events_file: Path) -> None:
    manifest = json.loads(path.read_text())
    opener = gzip.open if events_file.suffix == ".gz" else open
    with opener(events_file, "rb") as data:
        digest = hashlib.file_digest(data, "sha256").hexdigest()
    expected = manifest.get("events_sha256") or manifest.get("sha256")
    if expected != digest:
        raise Tampered(f"{events_file} does not match the SHA-256 in its manifest")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m audit.offline_verify", description=__doc__)
    parser.add_argument("events", type=Path, help="JSON Lines export (.gz allowed)")
    parser.add_argument(
        "--checkpoints",
        required=True,
        help="the witness: a directory of checkpoint-*.json, or s3://bucket/prefix (boto3; "
        "credentials from the AWS variables)",
    )
    parser.add_argument(
        "--s3-endpoint",
        default=os.environ.get("AISPM_AUDIT_WITNESS_S3_ENDPOINT", ""),
        help="S3-compatible endpoint for an s3:// witness (default: "
        "$AISPM_AUDIT_WITNESS_S3_ENDPOINT, else AWS)",
    )
    parser.add_argument("--public-key", required=True, help="PEM or base64 file, or base64")
    parser.add_argument("--manifest", type=Path, help="the export's manifest, to check its hash")
    args = parser.parse_args(argv)
    key_path = Path(args.public_key)
    try:
        key = chainhash.load_public_key(
            key_path.read_text() if key_path.is_file() else args.public_key
        )
    except ValueError as exc:
        parser.error(f"--public-key is neither a PEM nor a base64 Ed25519 public key: {exc}")
    try:
        if args.manifest:
            check_manifest(args.manifest, args.events)
        records = load_checkpoints(
            Path(args.checkpoints),
            key,
            records=read_checkpoints(args.checkpoints, endpoint=args.s3_endpoint),
        )
        events = read_events(args.events)
        anchored, unanchored = verify(events, records)
    except Tampered as exc:
        print(f"TAMPERED: {exc}", file=sys.stderr)
        return TAMPERED
    except WitnessUnreadable as exc:
        parser.error(f"--checkpoints cannot be read: {exc}")
    print(
        f"{len(events)} events: every hash matches its content; {anchored} anchored to "
        f"{len(records)} signed checkpoints"
    )
    if unanchored:
        ranges = ", ".join(f"{low}..{high}" for low, high in unanchored)
        print(f"NOT ANCHORED: seq {ranges} (no signed checkpoint head reached)", file=sys.stderr)
        return UNANCHORED
    return 0


if __name__ == "__main__":
    sys.exit(main())
