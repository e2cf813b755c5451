"""Stream every sealed audit event, in chain order, at least once, to SIEMs.

Each sink in AISPM_AUDIT_SIEM_URLS has a cursor (AuditSinkCursor): the last seq it
acknowledged. A delivery sends the events after it in seq order, a batch at a time,
and moves the cursor only once the sink accepted the batch; a sink that was down
resumes from its cursor, so nothing is lost or reordered (a batch that was received
but not acknowledged arrives twice; seq and hash tell copies apart). Every copy
carries the full event with seq, prev_hash and hash, so the SIEM's copy is itself
verifiable with audit.offline_verify.

- ocsf+https://host/path (or ocsf+http): OCSF 1.3 API Activity (class 6003) events,
  a JSON array per POST, retried with backoff on 5xx, 429 and network errors.
  A password in the URL is sent as a bearer token.
- syslog://host:port or syslog+tls://host:port[?ca=/path/ca.pem]: RFC 5424 over TCP
  (octet-counted, RFC 6587), one message per event.
- otlp+http://collector:4318/v1/logs (or otlp+https): OpenTelemetry logs through
  opentelemetry-sdk's OTLP/HTTP exporter.
"""

import json
import logging
import socket
import ssl
import time
import urllib.error
import urllib.request
import zlib
from datetime import UTC
from urllib.parse import parse_qs, unquote, urlsplit

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from . import chainhash, witness
from .models import AuditEvent, AuditSinkCursor
from .segments import SEGMENT_FIELDS

log = logging.getLogger(__name__)

BATCH = 500
HTTP_ATTEMPTS = 4
HTTP_BACKOFF_SECONDS = 0.5
TIMEOUT_SECONDS = 10.0
OCSF_VERSION = "1.3.0"


class SinkError(RuntimeError):
    """The sink did not accept a batch; its cursor stays where it was."""


def sink_name(url: str) -> str:
    """The URL without credentials or query: the cursor's key and what pages show."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"


def _event_document(row: dict) -> dict:
    return {**row, "created_at": chainhash.utc_text(row["created_at"])}


# --- OCSF over HTTP(S) ---------------------------------------------------------------


def ocsf_event(row: dict) -> dict:
    event = _event_document(row)
    document = {
        "class_uid": 6003,
        "class_name": "API Activity",
        "category_uid": 6,
        "category_name": "Application Activity",
        "activity_id": 99,
        "activity_name": row["event"],
        "type_uid": 600399,
        "severity_id": 1,
        "severity": "Informational",
        "status_id": 1,
        "status": "Success",
        "time": int(row["created_at"].timestamp() * 1000),
        "actor": {
            "user": {
                "name": row["actor_label"],
                "type": row["actor_kind"],
                "uid": str(row["actor_user_id"]) if row["actor_user_id"] else None,
            }
        },
        "api": {"operation": row["event"], "service": {"name": "aispm"}},
        "metadata": {
            "version": OCSF_VERSION,
            "product": {"name": "aispm", "vendor_name": "aispm"},
            "log_name": "aispm.audit",
            "uid": str(row["id"]),
            "sequence": row["seq"],
            "original_time": event["created_at"],
        },
        "unmapped": {"aispm_event": event},
    }
    if row["target_type"]:
        document["resources"] = [{"type": row["target_type"], "uid": row["target_id"]}]
    return document


def send_ocsf(url: str, rows: list[dict]) -> None:
    parts = urlsplit(url)
    target = parts._replace(scheme=parts.scheme.removeprefix("ocsf+"), netloc=_host(parts))
    body = json.dumps([ocsf_event(row) for row in rows], separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json"}
    if parts.password:
        headers["Authorization"] = f"Bearer {unquote(parts.password)}"
    problem = ""
    for attempt in range(HTTP_ATTEMPTS):
        if attempt:
            time.sleep(HTTP_BACKOFF_SECONDS * 2 ** (attempt - 1))
        request = urllib.request.Request(target.geturl(), data=body, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
                response.read()
            return
        except urllib.error.HTTPError as exc:
            problem = f"HTTP {exc.code}"
            if exc.code < 500 and exc.code != 429:
                break
        except (urllib.error.URLError, OSError) as exc:
            problem = str(getattr(exc, "reason", exc))
    raise SinkError(f"{sink_name(url)} refused {len(rows)} events: {problem}")


def _host(parts) -> str:
    return f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname


# --- syslog over TCP / TLS -----------------------------------------------------------


def _msgid(event: str) -> str:
    text = "".join(ch for ch in event if "!" <= ch <= "~")[:32]
    return text or "-"


def syslog_frame(row: dict) -> bytes:
    event = _event_document(row)
    structured = (
        f'[event@32473 seq="{row["seq"]}" hash="{row["hash"]}" prev_hash="{row["prev_hash"]}"]'
    )
    return witness.syslog_message(
        msgid=_msgid(row["event"]),
        body=json.dumps(event, separators=(",", ":"), ensure_ascii=False),
        timestamp=event["created_at"],
        structured=structured,
    )


def send_syslog(url: str, rows: list[dict]) -> None:
    parts = urlsplit(url)
    frames = b"".join(syslog_frame(row) for row in rows)
    try:
        with socket.create_connection(
            (parts.hostname, parts.port or 514), timeout=TIMEOUT_SECONDS
        ) as raw:
            if parts.scheme == "syslog+tls":
                ca = parse_qs(parts.query).get("ca", [None])[0]
                context = ssl.create_default_context(cafile=ca)
                with context.wrap_socket(raw, server_hostname=parts.hostname) as tls:
                    tls.sendall(frames)
            else:
                raw.sendall(frames)
    except (OSError, ssl.SSLError) as exc:
        raise SinkError(f"{sink_name(url)} refused {len(rows)} events: {exc}") from exc


# --- OpenTelemetry logs over OTLP/HTTP -------------------------------------------------


def send_otlp(url: str, rows: list[dict]) -> None:
    from opentelemetry._logs import LogRecord, SeverityNumber
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import ReadableLogRecord
    from opentelemetry.sdk._logs.export import LogRecordExportResult
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    parts = urlsplit(url)
    endpoint = parts._replace(scheme=parts.scheme.removeprefix("otlp+")).geturl()
    resource = Resource.create({"service.name": "aispm"})
    scope = InstrumentationScope("aispm.audit")
    records = []
    for row in rows:
        event = _event_document(row)
        stamp = int(row["created_at"].astimezone(UTC).timestamp() * 1_000_000_000)
        record = LogRecord(
            timestamp=stamp,
            observed_timestamp=stamp,
            severity_text="INFO",
            severity_number=SeverityNumber.INFO,
            event_name=row["event"],
            body=json.dumps(event, separators=(",", ":"), ensure_ascii=False),
            attributes={
                "aispm.seq": row["seq"],
                "aispm.hash": row["hash"],
                "aispm.prev_hash": row["prev_hash"],
                "aispm.event": row["event"],
                "aispm.actor": row["actor_label"],
                "aispm.target_type": row["target_type"],
                "aispm.target_id": row["target_id"],
            },
        )
        records.append(ReadableLogRecord(record, resource=resource, instrumentation_scope=scope))
    exporter = OTLPLogExporter(endpoint=endpoint, timeout=TIMEOUT_SECONDS)
    try:
        result = exporter.export(records)
    finally:
        exporter.shutdown()
    if result is not LogRecordExportResult.SUCCESS:
        raise SinkError(f"{sink_name(url)} refused {len(rows)} events (OTLP export failed)")


SENDERS = {"ocsf": send_ocsf, "syslog": send_syslog, "otlp": send_otlp}


def _sender(url: str):
    return SENDERS[urlsplit(url).scheme.split("+")[0]]


# --- delivery --------------------------------------------------------------------------


def sink_lock_key(name: str) -> int:
    """The PostgreSQL advisory lock (one bigint) that one sink's delivery holds."""
    return (0x61697373 << 32) | zlib.crc32(name.encode())


def siem_deliver(*, url: str, batch: int = BATCH) -> int:
    """Send the sink every sealed event after its cursor; return how many it accepted.

    One delivery per sink at a time (a PostgreSQL advisory lock keyed on the sink);
    a concurrent call returns 0. On a failure the cursor stays, the error is kept on
    it, and SinkError is raised."""
    name = sink_name(url)
    send = _sender(url)
    cursor, _ = AuditSinkCursor.objects.get_or_create(sink=name)
    connection = transaction.get_connection()
    lock = sink_lock_key(name)
    if connection.vendor == "postgresql":
        with connection.cursor() as db:
            db.execute("SELECT pg_try_advisory_lock(%s)", [lock])
            if not db.fetchone()[0]:
                return 0
    try:
        cursor.refresh_from_db()
        delivered = 0
        while True:
            rows = list(
                AuditEvent.objects.filter(seq__gt=cursor.last_seq)
                .order_by("seq")
                .values(*SEGMENT_FIELDS)[:batch]
            )
            if not rows:
                return delivered
            try:
                send(url, rows)
            except SinkError as exc:
                AuditSinkCursor.objects.filter(pk=cursor.pk).update(
                    failed_at=timezone.now(), last_error=str(exc)[:2000]
                )
                raise
            AuditSinkCursor.objects.filter(pk=cursor.pk).update(
                last_seq=rows[-1]["seq"], delivered_at=timezone.now(), last_error=""
            )
            cursor.last_seq = rows[-1]["seq"]
            delivered += len(rows)
    finally:
        if connection.vendor == "postgresql":
            with connection.cursor() as db:
                db.execute("SELECT pg_advisory_unlock(%s)", [lock])


def siem_deliver_all() -> int:
    """Every configured sink in turn; one that is down does not hold up the others."""
    delivered = 0
    for url in settings.AISPM_AUDIT_SIEM_URLS:
        try:
            delivered += siem_deliver(url=url)
        except SinkError as exc:
            log.warning("SIEM sink behind: %s", exc)
    return delivered


def sink_lag() -> list[dict]:
    """Each configured sink's cursor and how many sealed events it has yet to receive."""
    head = AuditEvent.objects.filter(seq__isnull=False).order_by("-seq").values("seq").first()
    head_seq = head["seq"] if head else 0
    cursors = {c.sink: c for c in AuditSinkCursor.objects.all()}
    lag = []
    for url in settings.AISPM_AUDIT_SIEM_URLS:
        name = sink_name(url)
        cursor = cursors.get(name)
        last = cursor.last_seq if cursor else 0
        lag.append(
            {
                "sink": name,
                "last_seq": last,
                "lag": max(head_seq - last, 0),
                "delivered_at": cursor.delivered_at if cursor else None,
                "failed_at": cursor.failed_at if cursor else None,
                "last_error": cursor.last_error if cursor else "",
            }
        )
    return lag
