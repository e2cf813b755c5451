"""Audit export benchmark: the CSV export against PostgreSQL's own COPY, over a million
decisions, plus sealing and verifying the audit chain.

Run it through `bench/export`, which creates the database, migrates it and sets the
environment (DEBUG off). This script then, in one process:

1. loads ROWS decisions and their reviews with the inbox benchmark's SQL loader
   (bench/inbox_bench.py), then one audit event per decision (`decision.submitted`,
   with the same data the service records) and one per review, unsealed, in SQL;
2. seals the events with audit.services.audit_seal in a loop (timed: events/s);
3. times `python manage.py audit_verify --no-seal` over the sealed chain (events/s);
4. starts gunicorn (1 sync worker, DEBUG off) and, ROUNDS times, alternates
   `COPY (SELECT <the CSV's columns> ...) TO STDOUT WITH CSV` of the same rows in the
   same order (read by psycopg and discarded) with a download of /audit/export.csv by
   curl to /dev/null as an auditor, sampling the worker's VmRSS every 20 ms and
   reading its VmHWM; the best round of each gives the rates (the machine is shared);
5. checks one filtered export end to end: the SHA-256 of the bytes curl received and
   the row count equal what the export's own audit event recorded.
"""

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aispm_site.settings")

import inbox_bench  # noqa: E402  (django.setup() happens there)
from django.db import connection  # noqa: E402
from django.db.models import NOT_PROVIDED  # noqa: E402
from django.test import Client  # noqa: E402

from aispm_site import roles  # noqa: E402
from approvals.models import Decision, Review  # noqa: E402
from audit.models import AuditEvent  # noqa: E402
from audit.services import audit_seal  # noqa: E402
from tests.factories import UserFactory  # noqa: E402

ROWS = inbox_bench.ROWS
PORT = int(os.environ.get("BENCH_PORT", "8917"))
ROUNDS = int(os.environ.get("ROUNDS", "2"))
REUSE_DB = os.environ.get("REUSE_DB") == "1"
RATIO_TARGET = 0.30
RSS_TARGET_MB = 200
VERIFY_TARGET = 100_000
log = inbox_bench.log

EVENT_SQL = """
INSERT INTO audit_auditevent (
    created_at, event, actor_kind, actor_label, actor_user_id, target_type, target_id, data,
    seq, prev_hash, hash
)
SELECT created_at, event, actor_kind, actor_label, actor_user_id, 'approvals.decision',
    target_id, data, NULL, '', ''
FROM (
    SELECT d.created_at, 'decision.submitted' AS event, 'agent' AS actor_kind,
        a.slug AS actor_label, NULL::integer AS actor_user_id, d.id::text AS target_id,
        jsonb_build_object(
            'action', t.key, 'status', d.status, 'params', d.params, 'evidence', d.evidence,
            'reasoning', d.reasoning, 'confidence', d.confidence,
            'policy', jsonb_build_object('outcome', d.policy_outcome, 'rule', d.policy_rule,
                                         'explanation', d.policy_explanation),
            'risk', d.risk, 'required_approvals', d.required_approvals,
            'behaviour_version', d.behaviour_version, 'key_id', NULL) AS data
    FROM approvals_decision d
    JOIN agents_agent a ON a.id = d.agent_id
    JOIN agents_actiontype t ON t.id = d.action_type_id
    UNION ALL
    SELECT r.created_at,
        CASE WHEN r.verdict = 'reject' THEN 'decision.rejected' ELSE 'decision.review_added' END,
        'user', u.username, r.reviewer_id, r.decision_id::text,
        CASE WHEN r.verdict = 'reject'
             THEN jsonb_build_object('reason', r.comment, 'tags', r.tags)
             ELSE jsonb_build_object('verdict', r.verdict, 'comment', r.comment,
                                     'params_before', r.params_before,
                                     'params_after', r.params_after, 'approvals', 1,
                                     'required_approvals', 1) END
    FROM approvals_review r
    JOIN auth_user u ON u.id = r.reviewer_id
) events
ORDER BY created_at
"""

# The CSV export's columns, computed by PostgreSQL itself, in the export's order.
COPY_SQL = """
COPY (
    SELECT d.id,
        to_char(d.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        a.slug, d.behaviour_version, t.key, d.summary, d.params::text, d.evidence::text,
        d.reasoning, d.confidence, d.policy_outcome, d.policy_rule, d.policy_explanation,
        d.required_approvals, d.status, rv.reviewers, rv.verdicts, rv.comments,
        d.approved_params::text,
        to_char(d.decided_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        to_char(d.released_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        d.release_result::text, d.canary, h.hash
    FROM approvals_decision d
    JOIN agents_agent a ON a.id = d.agent_id
    JOIN agents_actiontype t ON t.id = d.action_type_id
    LEFT JOIN LATERAL (
        SELECT string_agg(u.username, ' | ' ORDER BY r.created_at, r.id) AS reviewers,
            string_agg(r.verdict, ' | ' ORDER BY r.created_at, r.id) AS verdicts,
            string_agg(r.comment, ' | ' ORDER BY r.created_at, r.id) AS comments
        FROM approvals_review r JOIN auth_user u ON u.id = r.reviewer_id
        WHERE r.decision_id = d.id
    ) rv ON true
    LEFT JOIN LATERAL (
        SELECT e.hash FROM audit_auditevent e
        WHERE e.target_type = 'approvals.decision' AND e.target_id = d.id::text
          AND e.seq IS NOT NULL
        ORDER BY e.seq DESC LIMIT 1
    ) h ON true
    ORDER BY d.created_at DESC, d.id DESC
) TO STDOUT WITH (FORMAT csv, HEADER)
"""


def timed(label: str):
    class Timer:
        def __enter__(self):
            self.started = time.perf_counter()
            return self

        def __exit__(self, *exc):
            self.seconds = time.perf_counter() - self.started
            log(f"  {label}: {self.seconds:.1f} s")

    return Timer()


def default_unloaded_columns() -> list[str]:
    """Give NOT NULL columns that the inbox loader does not fill their model default, so
    the loader keeps working while the models grow new fields."""
    changed = []
    for model, sql in ((Decision, inbox_bench.DECISION_SQL), (Review, inbox_bench.REVIEW_SQL)):
        listed = {name.strip() for name in re.search(r"\(([^)]*)\)", sql).group(1).split(",")}
        for field in model._meta.concrete_fields:
            if (
                field.column in listed
                or field.null
                or field.primary_key
                or field.generated
                or field.db_default is not NOT_PROVIDED
                or not field.has_default()
            ):
                continue
            value = field.get_db_prep_save(field.get_default(), connection)
            with connection.cursor() as cursor:
                cursor.execute(
                    f"ALTER TABLE {model._meta.db_table} ALTER COLUMN {field.column} "
                    "SET DEFAULT %s",
                    [value],
                )
            changed.append(f"{model._meta.db_table}.{field.column}")
    return changed


def load_events() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")
        cursor.execute("SET work_mem = '256MB'")
        with timed("audit events (SQL)"):
            cursor.execute(EVENT_SQL)
        inserted = cursor.rowcount
        with timed("vacuum analyze audit"):
            cursor.execute("VACUUM (ANALYZE) audit_auditevent")
    return inserted


def ensure_recent_index() -> str:
    """The export reads newest first by keyset; it needs an index led by created_at."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'approvals_decision' "
            "AND indexdef ~ 'USING btree \\(created_at( DESC)?, id( DESC)?\\)'"
        )
        found = cursor.fetchone()
        if found and found[0] in {index.name for index in Decision._meta.indexes}:
            return f"index {found[0]} (from the migrations)"
        if found:
            return f"index {found[0]} created by a benchmark (NOT in the migrations yet)"
        with timed("CREATE INDEX decision_recent (created_at DESC, id DESC)"):
            cursor.execute(
                "CREATE INDEX decision_recent ON approvals_decision (created_at DESC, id DESC)"
            )
            cursor.execute("ANALYZE approvals_decision")
    return "index decision_recent created by this benchmark (NOT in the migrations yet)"


def seal() -> tuple[int, float]:
    sealed = 0
    started = time.perf_counter()
    last = started
    while batch := audit_seal(limit=20000):
        sealed += batch
        if time.perf_counter() - last > 30:
            last = time.perf_counter()
            log(f"  sealed {sealed:,} ({sealed / (last - started):,.0f}/s)")
    return sealed, time.perf_counter() - started


def verify() -> tuple[int, float, float, str]:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "manage.py", "audit_verify", "--no-seal"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - started
    out = result.stdout.strip()
    events = int(re.search(r"intact: (\d+) events", out).group(1))
    rate = float(re.search(r"([\d,]+) events/s", out).group(1).replace(",", ""))
    return events, rate, wall, out


def copy_baseline() -> tuple[int, float]:
    """COPY of the export's rows and columns, read by psycopg and discarded: (bytes, s)."""
    size = 0
    with connection.cursor() as cursor:
        started = time.perf_counter()
        with cursor.connection.cursor() as raw, raw.copy(COPY_SQL) as copy:
            for data in copy:
                size += len(data)
        return size, time.perf_counter() - started


def _worker_pid(master: int) -> int:
    for _ in range(200):
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.05)
    raise RuntimeError("gunicorn started no worker")


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


@contextlib.contextmanager
def gunicorn_server():
    """gunicorn with one sync worker, DEBUG off; yields (base URL, worker pid, cookie)."""
    auditor = UserFactory(username="bench-auditor", groups=[roles.AUDITORS])
    client = Client()
    client.force_login(auditor)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    env = {**os.environ, "ALLOWED_HOSTS": "127.0.0.1", "DEBUG": "false"}
    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent))
    server = subprocess.Popen(
        [
            gunicorn,
            "aispm_site.wsgi",
            "-w",
            "1",
            "-b",
            f"127.0.0.1:{PORT}",
            # A sync worker that is busy longer than --timeout is killed; a million-row
            # export takes longer than the default 30 s.
            "--timeout",
            "900",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    try:
        worker = _worker_pid(server.pid)
        base = f"http://127.0.0.1:{PORT}"
        for _ in range(100):
            probe = subprocess.run(
                ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"{base}/healthz/"],
                capture_output=True,
                text=True,
            )
            if probe.stdout == "200":
                break
            time.sleep(0.1)
        # Warm up the worker (imports, templates, connection) with a search page.
        subprocess.run(
            ["curl", "-sf", "-o", "/dev/null", "-H", f"Cookie: {cookie}", f"{base}/audit/"],
            check=True,
        )
        yield base, worker, cookie
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def _export_event(after_id: int) -> AuditEvent:
    """The audit event the export records once its stream has ended."""
    for _ in range(100):
        event = AuditEvent.objects.filter(event="audit.exported", pk__gt=after_id).first()
        if event is not None:
            return event
        time.sleep(0.05)
    raise AssertionError("the export recorded no audit event")


def _last_event_id() -> int:
    return AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


def timed_export(base: str, worker: int, cookie: str) -> dict:
    """Download the whole CSV export with curl to /dev/null, sampling the worker's RSS."""
    rss_before = _status_kb(worker, "VmRSS")
    samples = []
    done = threading.Event()

    def sample():
        while not done.is_set():
            samples.append(_status_kb(worker, "VmRSS"))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    after = _last_event_id()
    result = subprocess.run(
        [
            "curl",
            "-sS",
            "-H",
            f"Cookie: {cookie}",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download} %{time_total}",
            f"{base}/audit/export.csv",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    done.set()
    sampler.join()
    status, size, seconds = result.stdout.split()
    assert status == "200", result
    event = _export_event(after)
    assert event.data["complete"] and event.data["bytes"] == int(size), event.data
    return {
        "rows": event.data["rows"],
        "bytes": int(size),
        "seconds": float(seconds),
        "rss_before_mb": rss_before / 1024,
        "rss_peak_mb": max(samples) / 1024,
        "hwm_mb": _status_kb(worker, "VmHWM") / 1024,
    }


def checked_export(base: str, cookie: str, query: str) -> bool:
    """One filtered export piped into sha256sum: do the bytes match its audit event?"""
    after = _last_event_id()
    result = subprocess.run(
        f"curl -sSf -H 'Cookie: {cookie}' '{base}/audit/export.csv?{query}' | sha256sum",
        shell=True,
        capture_output=True,
        text=True,
        check=True,
    )
    event = _export_event(after)
    decisions = Decision.objects.filter(agent__slug=query.split("=", 1)[1]).count()
    return result.stdout.split()[0] == event.data["sha256"] and event.data["rows"] == decisions


def main() -> None:
    database = connection.settings_dict["NAME"]
    log(f"export benchmark: {ROWS:,} decisions, database {database}")
    if REUSE_DB:
        log("reusing the loaded and sealed database (REUSE_DB=1): no load, no seal timing")
        sealed = seal_seconds = 0
    else:
        seeded = inbox_bench.seed()
        defaulted = default_unloaded_columns()
        if defaulted:
            log(f"columns the inbox loader does not fill, given their model default: {defaulted}")
        started = time.perf_counter()
        inbox_bench.load(seeded)
        log(f"decisions and reviews loaded ({time.perf_counter() - started:.0f} s)")
        events = load_events()
        log(f"{events:,} audit events inserted, unsealed")
    index_note = ensure_recent_index()
    log(index_note)
    if not REUSE_DB:
        sealed, seal_seconds = seal()
        log(f"sealed {sealed:,} events in {seal_seconds:.1f} s")
        with connection.cursor() as cursor:
            cursor.execute("VACUUM (ANALYZE) audit_auditevent")

    verified, verify_rate, verify_wall, verify_out = verify()
    log(f"audit_verify --no-seal: {verify_out} (wall {verify_wall:.1f} s)")

    decisions = Decision.objects.count()
    copy_baseline()  # warms the caches for both measurements
    copies, exports_ = [], []
    with gunicorn_server() as (base, worker, cookie):
        for number in range(1, ROUNDS + 1):
            copy_bytes, copy_seconds = copy_baseline()
            copies.append(copy_seconds)
            log(f"round {number}: COPY {copy_bytes / 1e6:,.0f} MB in {copy_seconds:.1f} s")
            export = timed_export(base, worker, cookie)
            exports_.append(export)
            log(
                f"round {number}: gunicorn export {export['rows']:,} rows, "
                f"{export['bytes'] / 1e6:,.0f} MB in {export['seconds']:.1f} s, "
                f"worker RSS peak {export['rss_peak_mb']:.0f} MB"
            )
        agent = Decision.objects.values_list("agent__slug", flat=True).first()
        sha_ok = checked_export(base, cookie, f"agent={agent}")
    copy_seconds = min(copies)
    export = min(exports_, key=lambda e: e["seconds"])
    rss_peak = max(e["rss_peak_mb"] for e in exports_)
    hwm = max(e["hwm_mb"] for e in exports_)

    copy_rate = decisions / copy_seconds
    export_rate = export["rows"] / export["seconds"]
    ratio = export_rate / copy_rate
    seal_rate = sealed / seal_seconds if seal_seconds else 0
    verdict = {True: "ok", False: "MISSED"}
    lines = [
        "",
        f"Audit export, {decisions:,} decisions; {verified:,} sealed audit events "
        f"(PostgreSQL, DEBUG off; {index_note})",
        f"{'measure':<44} {'value':>16}  target",
        "-" * 72,
        f"{'COPY (SELECT same columns) TO STDOUT CSV':<44} {copy_rate:>11,.0f} rows/s",
        f"{'CSV export, gunicorn (1 worker) -> curl':<44} {export_rate:>11,.0f} rows/s",
        f"{'  (best of ' + str(ROUNDS) + ' alternating rounds each)':<44}",
        f"{'  ratio export / COPY':<44} {ratio:>16.2f}  >= {RATIO_TARGET:.2f} "
        f"{verdict[ratio >= RATIO_TARGET]}",
        f"{'  MB: export / COPY':<44} {export['bytes'] / 1e6:>9,.0f} / {copy_bytes / 1e6:,.0f}",
        f"{'  rows exported = decisions':<44} {'yes' if export['rows'] == decisions else 'NO':>16}",
        f"{'  SHA-256 of a filtered export = its event':<44} {'yes' if sha_ok else 'NO':>16}",
        f"{'worker RSS before export':<44} {export['rss_before_mb']:>13.0f} MB",
        f"{'worker RSS peak during exports (sampled)':<44} {rss_peak:>13.0f} MB  "
        f"< {RSS_TARGET_MB} MB {verdict[rss_peak < RSS_TARGET_MB]}",
        f"{'worker VmHWM after the exports':<44} {hwm:>13.0f} MB  "
        f"< {RSS_TARGET_MB} MB {verdict[hwm < RSS_TARGET_MB]}",
        f"{'audit_seal (in a loop)':<44} {seal_rate:>9,.0f} events/s",
        f"{'audit_verify --no-seal (its own timing)':<44} {verify_rate:>9,.0f} events/s  "
        f">= {VERIFY_TARGET:,} {verdict[verify_rate >= VERIFY_TARGET]}",
        f"{'audit_verify --no-seal (wall, with startup)':<44} "
        f"{verified / verify_wall:>9,.0f} events/s",
    ]
    log("\n".join(lines))


if __name__ == "__main__":
    main()
