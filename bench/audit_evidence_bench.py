"""Audit evidence benchmark. Run it through `bench/audit_evidence`.

1. Inserts EVENTS unsealed audit events in SQL (decision-like data, one float each).
2. Seals the first half with audit_seal in batches of 20,000 and no checkpoints, then
   the second half in batches of CHECKPOINT_EVERY with a signed checkpoint after each
   batch: the sealer's rate both ways, and the mean cost of one checkpoint_create.
3. Times `manage.py audit_verify --no-seal` over the chain and all its checkpoints
   (its own timing, so without interpreter start-up).
4. Streams every event through siem_deliver to each kind of SIEM sink, a loopback receiver in
   another process that reads and discards: events/s per sink.
"""

import multiprocessing
import os
import re
import socket
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aispm_site.settings")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402

from audit import checkpoints, services, siem  # noqa: E402
from audit.models import AuditCheckpoint  # noqa: E402

EVENTS = int(os.environ.get("EVENTS", "300000"))
CHECKPOINT_EVERY = int(os.environ.get("CHECKPOINT_EVERY", "50"))
VERIFY_TARGET = 100_000

LOAD_SQL = """
INSERT INTO audit_auditevent (created_at, event, actor_kind, actor_label, actor_user_id,
    target_type, target_id, data, seq, prev_hash, hash)
SELECT now() - make_interval(secs => %s - n), 'decision.submitted', 'agent', 'sdr-bot', NULL,
    'approvals.decision', gen_random_uuid()::text,
    jsonb_build_object('action', 'email.send', 'confidence', 0.85,
        'params', jsonb_build_object('to', 'lead' || n || '@example.com',
                                     'subject', 'Follow-up ' || n),
        'reasoning', repeat('The lead asked for pricing. ', 4),
        'policy', jsonb_build_object('outcome', 'review', 'rule', 'email-review')),
    NULL, '', ''
FROM generate_series(1, %s) AS n
"""


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def seal_plain(limit: int) -> tuple[int, float]:
    sealed, started = 0, time.perf_counter()
    while sealed < limit and (batch := services.audit_seal(limit=min(20000, limit - sealed))):
        sealed += batch
    return sealed, time.perf_counter() - started


def seal_with_checkpoints() -> tuple[int, float, int, float]:
    sealed = made = 0
    checkpoint_seconds = 0.0
    started = time.perf_counter()
    while batch := services.audit_seal(limit=CHECKPOINT_EVERY):
        sealed += batch
        mark = time.perf_counter()
        if checkpoints.checkpoint_create(publish=False):
            made += 1
        checkpoint_seconds += time.perf_counter() - mark
    return sealed, time.perf_counter() - started, made, checkpoint_seconds


def verify(*, signing_key: bool = True) -> tuple[float, str]:
    env = dict(os.environ)
    if not signing_key:  # no key: the chain alone, as before checkpoints
        env.pop("AISPM_AUDIT_SIGNING_KEY", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "audit_verify", "--no-seal"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    out = result.stdout.strip().splitlines()[-1]
    rate = float(re.search(r"([\d,]+) events/s", out).group(1).replace(",", ""))
    return rate, out


# --- loopback sinks, each in its own process ------------------------------------------


def _http_sink(port_queue):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port_queue.put(server.server_address[1])
    server.serve_forever()


def _tcp_sink(port_queue):
    server = socket.create_server(("127.0.0.1", 0))
    port_queue.put(server.getsockname()[1])
    while True:
        conn, _ = server.accept()
        with conn:
            while conn.recv(1 << 20):
                pass


def start_sink(target) -> tuple[multiprocessing.Process, int]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(queue,), daemon=True)
    process.start()
    return process, queue.get(timeout=30)


def stream(url: str) -> tuple[int, float]:
    started = time.perf_counter()
    delivered = siem.siem_deliver(url=url)
    return delivered, delivered / (time.perf_counter() - started)


def main() -> None:
    with connection.cursor() as cursor:
        started = time.perf_counter()
        cursor.execute(LOAD_SQL, [EVENTS, EVENTS])
    log(f"inserted {EVENTS:,} unsealed events in {time.perf_counter() - started:.1f} s")
    half = EVENTS // 2
    plain, plain_s = seal_plain(half)
    log(f"sealed {plain:,} without checkpoints: {plain / plain_s:,.0f} events/s")
    with_cp, with_cp_s, made, cp_s = seal_with_checkpoints()
    log(
        f"sealed {with_cp:,} in batches of {CHECKPOINT_EVERY} with {made:,} checkpoints: "
        f"{with_cp / with_cp_s:,.0f} events/s; checkpoint_create {cp_s / made * 1000:.2f} ms each"
    )
    mark = time.perf_counter()
    for _ in range(1000):
        services.audit_seal(limit=1)  # nothing left: the cost of an empty sealer pass
    empty_seal_ms = time.perf_counter() - mark  # s per 1000 passes = ms per pass
    plain_rate, plain_out = verify(signing_key=False)
    log(f"audit_verify without a key: {plain_out}")
    verify_rate, verify_out = verify()
    log(f"audit_verify: {verify_out}")
    checkpoint_count = AuditCheckpoint.objects.count()
    anchor_started = time.perf_counter()
    checkpoints.checkpoints_verify(head_seq=EVENTS)
    anchor_s = time.perf_counter() - anchor_started
    sinks = {}
    for kind, target, url in [
        ("OCSF over HTTP", _http_sink, "ocsf+http://127.0.0.1:{port}/ingest"),
        ("syslog over TCP", _tcp_sink, "syslog://127.0.0.1:{port}"),
        ("OTLP/HTTP logs", _http_sink, "otlp+http://127.0.0.1:{port}/v1/logs"),
    ]:
        process, port = start_sink(target)
        try:
            delivered, sinks[kind] = stream(url.format(port=port))
            log(f"{kind}: {delivered:,} events, {sinks[kind]:,.0f} events/s")
        finally:
            process.terminate()
    seal_rate = plain / plain_s
    print()
    print(f"Audit evidence, {EVENTS:,} events, {checkpoint_count:,} checkpoints")
    print(f"{'audit_seal, batches of 20,000, no checkpoints':<58} {seal_rate:>10,.0f} events/s")
    print(
        f"{f'audit_seal, batches of {CHECKPOINT_EVERY} + a checkpoint after each':<58} "
        f"{with_cp / with_cp_s:>10,.0f} events/s"
    )
    print(
        f"{'checkpoint_create (lock, head, sign, insert, commit)':<58} "
        f"{cp_s / made * 1000:>10.2f} ms"
    )
    print(f"{'empty audit_seal pass, for comparison':<58} {empty_seal_ms:>10.2f} ms")
    verdict = "ok" if verify_rate >= VERIFY_TARGET else "BELOW TARGET"
    print(
        f"{'audit_verify --no-seal with every checkpoint':<58} {verify_rate:>10,.0f} events/s  "
        f">= {VERIFY_TARGET:,} {verdict}"
    )
    print(f"{'audit_verify --no-seal, no key (the chain alone)':<58} {plain_rate:>10,.0f} events/s")
    print(
        f"{'holding the chain to its checkpoints, per checkpoint':<58} "
        f"{anchor_s / max(checkpoint_count, 1) * 1e6:>10.0f} µs"
    )
    for kind, rate in sinks.items():
        print(
            f"{f'stream to {kind}, batches of {siem.BATCH}':<58} {rate:>10,.0f} events/s  "
            f"({rate / seal_rate:.1f}x the sealer)"
        )


if __name__ == "__main__":
    main()
