"""The same-stack floor for release: the least a Celery task can do per release.

One task claims a row with UPDATE ... RETURNING, POSTs the same Standard Webhooks
signed body to the same loopback receiver over a kept-alive connection, and records
the result with one UPDATE. It runs in the same Celery app, broker, worker and pool
as aispm's release_decision (the worker loads it with `--include bench.release_floor`),
so aispm's release throughput can be quoted as a ratio of it. No lease re-check, no
audit, no policy re-check, no attempt history: those are what aispm adds.
"""

import http.client
import json
import os
import threading
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit

from celery import shared_task
from django.db import connection
from standardwebhooks.webhooks import Webhook

TABLE = "bench_release_floor"
CREATE = (
    f"create table if not exists {TABLE} (id bigserial primary key, status text not null,"
    " attempts int not null default 0, lease_until timestamptz, url text not null,"
    " secret text not null, payload jsonb not null, result jsonb, released_at timestamptz)"
)
CLAIM = (
    f"update {TABLE} set status = 'releasing', attempts = attempts + 1,"
    " lease_until = now() + interval '120 seconds'"
    " where id = %s and (status = 'approved' or (status = 'releasing' and lease_until <= now()))"
    " returning url, secret, payload"
)
RECORD = (
    f"update {TABLE} set status = %s, result = %s, lease_until = null,"
    " released_at = case when %s then now() end where id = %s"
)
# One kept-alive connection per target for each process (prefork) or thread (threads).
_local = threading.local()
os.register_at_fork(after_in_child=lambda: _local.__dict__.clear())


def _post(url: str, body: bytes, headers: dict) -> tuple[int, bytes]:
    parts = urlsplit(url)
    key = (parts.hostname, parts.port)
    _connections = _local.__dict__.setdefault("connections", {})
    for attempt in (1, 2):
        conn = _connections.get(key)
        if conn is None:
            conn = _connections[key] = http.client.HTTPConnection(*key, timeout=10)
        try:
            conn.request("POST", parts.path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        except (ConnectionError, http.client.HTTPException):
            conn.close()
            _connections.pop(key, None)
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


@shared_task(name="bench.release_floor", acks_late=True, ignore_result=True)
def release_floor(row_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(CLAIM, [row_id])
        row = cursor.fetchone()
    if row is None:
        return "not claimable"
    url, secret, payload = row
    if isinstance(payload, str):
        payload = json.loads(payload)
    body = json.dumps(payload, separators=(",", ":"))
    message_id = str(payload["decision_id"])
    timestamp = datetime.now(UTC)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "aispm-release-floor/1",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, timestamp, body),
        "Idempotency-Key": message_id,
    }
    started = time.monotonic()
    status, reply = _post(url, body.encode(), headers)
    result = {
        "status_code": status,
        "excerpt": reply[:500].decode(errors="replace"),
        "duration_ms": int((time.monotonic() - started) * 1000),
    }
    succeeded = 200 <= status < 300
    with connection.cursor() as cursor:
        cursor.execute(
            RECORD, ["released" if succeeded else "failed", json.dumps(result), succeeded, row_id]
        )
    return "released" if succeeded else "failed"
