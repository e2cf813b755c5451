"""Witnesses: copies of every signed checkpoint outside the database.

- file:///dir/ writes one JSON file per checkpoint, created exclusively (O_EXCL), so
  nothing aispm does overwrites one; in production the directory is WORM storage.
- syslog://host:port sends each checkpoint as an RFC 5424 message over TCP
  (octet-counted, RFC 6587), to a collector the database owner does not control.
- s3://bucket/prefix writes one object per checkpoint, never overwritten, under
  Object Lock retention when the bucket has it (audit.witness_s3).

`witness_compare` reads a file or s3 witness back and reports a checkpoint the database
lacks or holds differently: the trace of an insider who deleted the newest events
and the newest checkpoints together.
"""

import json
import os
import socket
from pathlib import Path
from urllib.parse import unquote, urlsplit

from django.conf import settings

from . import chainhash, witness_s3
from .models import AuditCheckpoint

SYSLOG_PRI = 16 * 8 + 5  # facility local0, severity notice
APP_NAME = "aispm"


class WitnessError(RuntimeError):
    """The witness could not be written or read."""


def _directory(url: str) -> Path:
    return Path(unquote(urlsplit(url).path))


def file_name(record: dict) -> str:
    return f"checkpoint-{record['last_seq']:020d}.json"


def record_bytes(record: dict) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def _publish_file(url: str, record: dict) -> Path:
    directory = _directory(url)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / file_name(record)
    data = record_bytes(record)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    except FileExistsError:
        if path.read_bytes() == data:
            return path  # published before: a retry
        raise WitnessError(f"{path} already holds a different checkpoint") from None
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def syslog_message(*, msgid: str, body: str, timestamp: str, structured: str = "-") -> bytes:
    """One RFC 5424 message, framed by octet counting (RFC 6587) for TCP."""
    host = socket.gethostname() or "-"
    line = f"<{SYSLOG_PRI}>1 {timestamp} {host} {APP_NAME} {os.getpid()} {msgid} {structured} "
    payload = line.encode() + body.encode()
    return str(len(payload)).encode() + b" " + payload


def syslog_send(url: str, messages: list[bytes], *, timeout: float = 5.0) -> None:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or 514), timeout=timeout) as s:
            s.sendall(b"".join(messages))
    except OSError as exc:
        raise WitnessError(f"syslog witness {parts.hostname}:{parts.port} failed: {exc}") from exc


def _scheme(url: str) -> str:
    return url.partition("://")[0].lower() if "://" in url else ""


def _s3_client():
    try:
        return witness_s3.client(settings.AISPM_AUDIT_WITNESS_S3_ENDPOINT)
    except (witness_s3.S3ConfigError, witness_s3.S3WitnessError) as exc:
        raise WitnessError(str(exc)) from exc


def witness_publish(*, url: str, checkpoint: AuditCheckpoint, s3=None) -> None:
    record = chainhash.checkpoint_record(checkpoint.as_document())
    scheme = _scheme(url)
    if scheme == "file":
        try:
            _publish_file(url, record)
        except OSError as exc:
            raise WitnessError(f"file witness {_directory(url)} failed: {exc}") from exc
    elif scheme == "s3":
        try:
            witness_s3.publish(
                url,
                file_name(record),
                record_bytes(record),
                endpoint=settings.AISPM_AUDIT_WITNESS_S3_ENDPOINT,
                retention_days=settings.AISPM_AUDIT_RETENTION_DAYS,
                s3=s3,
            )
        except (witness_s3.S3ConfigError, witness_s3.S3WitnessError) as exc:
            raise WitnessError(str(exc)) from exc
    elif scheme == "syslog":
        structured = (
            f'[checkpoint@32473 first_seq="{record["first_seq"]}" '
            f'last_seq="{record["last_seq"]}" hash="{record["hash"]}"]'
        )
        syslog_send(
            url,
            [
                syslog_message(
                    msgid="checkpoint",
                    body=json.dumps(record, sort_keys=True, separators=(",", ":")),
                    timestamp=record["created_at"],
                    structured=structured,
                )
            ],
        )
    else:
        raise WitnessError(f"unsupported witness URL scheme {scheme!r}")


def _holds(url: str, checkpoint: AuditCheckpoint, s3) -> bool:
    name = file_name({"last_seq": checkpoint.last_seq})
    if _scheme(url) == "file":
        return (_directory(url) / name).exists()
    try:
        return witness_s3.exists(url, name, s3=s3)
    except (witness_s3.S3ConfigError, witness_s3.S3WitnessError) as exc:
        raise WitnessError(str(exc)) from exc


def witness_catch_up(*, url: str, published: AuditCheckpoint | None = None) -> int:
    """Publish the checkpoints the witness lacks, newest back to the newest one it holds:
    those an outage kept from it. `published` was just written and is not checked
    again. Costs one existence check when there is nothing to catch up; a syslog
    witness cannot say what it holds, so there it does nothing."""
    scheme = _scheme(url)
    if scheme not in {"file", "s3"}:
        return 0
    s3 = _s3_client() if scheme == "s3" else None
    older = AuditCheckpoint.objects.order_by("-last_seq")
    if published is not None:
        older = older.filter(last_seq__lt=published.last_seq)
    missing = []
    for checkpoint in older.iterator():
        if _holds(url, checkpoint, s3):
            break
        missing.append(checkpoint)
    for checkpoint in reversed(missing):
        witness_publish(url=url, checkpoint=checkpoint, s3=s3)
    return len(missing)


def witness_location(url: str) -> str:
    """The witness URL to show: without any user:password@ part."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, path = rest.partition("/")
    return f"{scheme}://{netloc.rpartition('@')[2]}{slash}{path}"


def witness_read(url: str) -> list[dict]:
    """The checkpoints a file or s3 witness holds, in seq order."""
    scheme = _scheme(url)
    if scheme == "s3":
        try:
            return witness_s3.read(url, endpoint=settings.AISPM_AUDIT_WITNESS_S3_ENDPOINT)
        except (witness_s3.S3ConfigError, witness_s3.S3WitnessError) as exc:
            raise WitnessError(str(exc)) from exc
    if scheme != "file":
        raise WitnessError(
            "only a file:// or s3:// witness can be read back; read a syslog collector's "
            "copy into a directory and pass that as file://"
        )
    directory = _directory(url)
    if not directory.is_dir():
        raise WitnessError(f"witness directory {directory} does not exist")
    records = []
    for path in sorted(directory.glob("checkpoint-*.json")):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            raise WitnessError(f"{path} is not a checkpoint: {exc}") from None
    return sorted(records, key=lambda record: record["last_seq"])


def witness_compare(*, url: str) -> str:
    """The first difference between the witness and the database's checkpoints, or ''."""
    held = {
        checkpoint.last_seq: checkpoint.as_document()
        for checkpoint in AuditCheckpoint.objects.order_by("last_seq")
    }
    for record in witness_read(url):
        name = (
            f"witness checkpoint seq {record['first_seq']}..{record['last_seq']} "
            f"({record['hash'][:16]}…)"
        )
        ours = held.get(record["last_seq"])
        if ours is None:
            return f"{name}: the database lacks it (deleted events and checkpoints?)"
        if chainhash.checkpoint_record(ours) != record:
            return f"{name}: the database holds a different checkpoint for seq {record['last_seq']}"
    return ""
