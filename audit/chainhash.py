"""The bytes the audit chain and its checkpoints hash and sign.

This module imports nothing from Django, so that `python -m audit.offline_verify`
can check an export with only the standard library and `cryptography`.
"""

import base64
import hashlib
import json
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

GENESIS = "0" * 64
CHECKPOINT_VERSION = 1


def _canonical_value(value):
    """JSON values with floats as their shortest round-trip text, so that no
    database or language can hash a number differently."""
    if isinstance(value, float):
        return {"$float": repr(value)}
    if isinstance(value, dict):
        return {_canonical_key(str(key)): _canonical_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_canonical_value(item) for item in value]
    return value


def _canonical_key(key: str) -> str:
    # "$float" marks a number; a key of the data's own that starts with "$" gets one
    # more, so that no object can pass for a number.
    return "$" + key if key.startswith("$") else key


def _canonical_object(pairs) -> dict:
    return {_canonical_key(key): value for key, value in pairs}


def _float_marker(text: str) -> dict:
    return {"$float": repr(float(text))}


def canonical_data_from_json(text: str):
    """Decode JSON text straight into canonical form (floats kept as text)."""
    return json.loads(text, parse_float=_float_marker, object_pairs_hook=_canonical_object)


def utc_text(value) -> str:
    if isinstance(value, str):  # already formatted (the database's or an export's text)
        return value
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_event(row: dict) -> bytes:
    """The bytes an event's hash covers: sorted keys, UTC timestamps, no floats."""
    document = {
        "id": row["id"],
        "seq": row["seq"],
        "created_at": utc_text(row["created_at"]),
        "event": row["event"],
        "actor_kind": row["actor_kind"],
        "actor_label": row["actor_label"],
        "actor_user_id": row["actor_user_id"],
        "target_type": row["target_type"],
        "target_id": row["target_id"],
        "data": row["data"] if row.get("canonical") else _canonical_value(row["data"]),
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def event_hash(row: dict, prev_hash: str) -> str:
    return hashlib.sha256(canonical_event(row) + prev_hash.encode()).hexdigest()


# --- checkpoints -----------------------------------------------------------------------

CHECKPOINT_FIELDS = (
    "first_seq",
    "last_seq",
    "head_hash",
    "prev_hash",
    "created_at",
    "key_fingerprint",
)


def checkpoint_document(checkpoint: dict) -> bytes:
    """The bytes a checkpoint's hash covers and its signature signs."""
    document = {name: checkpoint[name] for name in CHECKPOINT_FIELDS}
    document["created_at"] = utc_text(document["created_at"])
    document["v"] = CHECKPOINT_VERSION
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def checkpoint_hash(checkpoint: dict) -> str:
    return hashlib.sha256(checkpoint_document(checkpoint)).hexdigest()


def private_key_from_seed(seed: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(key: Ed25519PublicKey) -> str:
    """SHA-256 of the raw 32-byte public key, in hex."""
    return hashlib.sha256(public_key_bytes(key)).hexdigest()


def public_key_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def load_public_key(text: str) -> Ed25519PublicKey:
    """A public key as PEM, or as base64 of its 32 raw bytes."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_public_key(text.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("the public key is not an Ed25519 key")
        return key
    raw = base64.b64decode(text, validate=True)
    return Ed25519PublicKey.from_public_bytes(raw)


def sign(key: Ed25519PrivateKey, checkpoint: dict) -> str:
    return base64.b64encode(key.sign(checkpoint_document(checkpoint))).decode()


def signature_valid(key: Ed25519PublicKey, checkpoint: dict, signature: str) -> bool:
    try:
        key.verify(base64.b64decode(signature, validate=True), checkpoint_document(checkpoint))
    except (InvalidSignature, ValueError):
        return False
    return True


def checkpoint_record(checkpoint: dict) -> dict:
    """A checkpoint as the JSON object witnesses and exports carry."""
    record = {name: checkpoint[name] for name in CHECKPOINT_FIELDS}
    record["created_at"] = utc_text(record["created_at"])
    record["v"] = CHECKPOINT_VERSION
    record["hash"] = checkpoint["hash"]
    record["signature"] = checkpoint["signature"]
    return record


def now_text() -> str:
    return utc_text(datetime.now(UTC))
