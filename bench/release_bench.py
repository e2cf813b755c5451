"""Release benchmark: a real Celery worker on Redis releasing to a loopback receiver.

Run it through `bench/release`, which creates the database, migrates it and sets the
environment. This script then, in one process:

1. creates a reviewer, two webhook action types, an agent, its grants, key and policy
   with the services;
2. starts a loopback receiver and one `celery worker --pool P --concurrency C` (threads 8
   unless POOL and CONCURRENCY say otherwise);
3. (a) latency: N times, creates a pending decision, approves it with decision_approve
   (which commits and enqueues after commit) and times from decision_approve returning
   to the receiver reading the request; one decision at a time, after WARMUP unmeasured;
4. (b) throughput, as a ratio of the same-stack floor (bench/release_floor.py) in the
   same run: ROUNDS times, alternating, M floor rows and then M auto-approved aispm
   decisions are made ready with no task enqueued, all M tasks are enqueued at once,
   and the time runs from the first enqueue until all M are released in the database;
5. (c) queries per release: one release of each, run in this process under
   CaptureQueriesContext (as bench/inbox counts the inbox's queries);
6. (d) sustained mixed load: submits allowed decisions through the submission service
   (decision_submit, each enqueueing its release on commit) at MIXED_RATE a second for
   MIXED_SECONDS while the worker releases them, samples the backlog (approved or
   releasing) every second, and times the drain after the submissions stop (goal: 10 s).

With PYSPY=1 the worker is profiled with py-spy during aispm's throughput rounds and
the top 15 frames by self time are printed. The last line is a summary for
bench/README.md.
"""

import http.server
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aispm_site.settings")

import django  # noqa: E402

django.setup()

import redis  # noqa: E402
from celery.utils.nodenames import host_format  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from agents import services as agent_services  # noqa: E402
from aispm_site.celery import app as celery_app  # noqa: E402
from approvals import services, tasks  # noqa: E402
from approvals.models import Decision  # noqa: E402
from bench import release_floor  # noqa: E402

LATENCY_N = int(os.environ.get("LATENCY_N", "200"))
WARMUP = int(os.environ.get("WARMUP", "10"))
THROUGHPUT_N = int(os.environ.get("THROUGHPUT_N", "2000"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
# The release worker README.md recommends (AISPM_RELEASE_QUEUE): a thread pool, since a
# release waits on PostgreSQL and the receiver. POOL=prefork CONCURRENCY=2 for the default.
CONCURRENCY = int(os.environ.get("CONCURRENCY", "8"))
POOL = os.environ.get("POOL", "threads")
TIMEOUT = float(os.environ.get("TIMEOUT", "900"))
MIXED_RATE = float(os.environ.get("MIXED_RATE", "200"))
MIXED_SECONDS = float(os.environ.get("MIXED_SECONDS", "60"))
MIXED_HTTP = os.environ.get("MIXED_HTTP", "0") == "1"
DRAIN_GOAL_S = 10.0
PYSPY = os.environ.get("PYSPY", "0") == "1"
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TARGET_P50_MS, TARGET_P95_MS = 300.0, 1000.0
SCHEMA = {"type": "object", "required": ["what"], "properties": {"what": {"type": "string"}}}


class Receiver:
    """Answers every POST with 200 at once and notes when each webhook-id arrived."""

    def __init__(self):
        self.arrivals: dict[str, float] = {}
        self.deliveries = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as most webhook receivers
            # It replies in two writes (headers, body); without TCP_NODELAY the second
            # waits ~40 ms for the client's delayed ACK, for floor and aispm alike,
            # which capped both at ~22 releases a second per worker process.
            disable_nagle_algorithm = True

            def do_POST(self):  # noqa: N802 - http.server's naming
                arrived = time.perf_counter()
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.deliveries += 1
                    receiver.arrivals.setdefault(self.headers["webhook-id"], arrived)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, webhook_id: str, timeout: float = 30.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            arrived = self.arrivals.get(webhook_id)
            if arrived is not None:
                return arrived
            time.sleep(0.0005)
        raise SystemExit(f"the receiver never saw decision {webhook_id}")


class Worker:
    def __init__(self, *, concurrency: int, log_path: Path):
        self.nodename = f"bench-{uuid.uuid4().hex[:6]}@%h"
        self.log_path = log_path
        self.popen = subprocess.Popen(
            [
                *(sys.executable, "-m", "celery", "-A", "aispm_site", "worker", "-l", "warning"),
                *("--pool", POOL, "--concurrency", str(concurrency), "-n", self.nodename),
                *("--include", "bench.release_floor"),
                *("--without-mingle", "--without-gossip", "--without-heartbeat"),
            ],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log_path.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while not celery_app.control.ping(destination=[host_format(self.nodename)], timeout=0.3):
            if self.popen.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"the worker did not start:\n{log_path.read_text()[-3000:]}")

    def stop(self):
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=15)


def world(receiver: Receiver):
    User = get_user_model()
    owner = User.objects.create_user("bench-owner")
    reviewer = User.objects.create_user("bench-reviewer")
    actions = {}
    for key in ("bench.review", "bench.auto"):
        actions[key] = agent_services.action_type_apply(
            key=key,
            name=key,
            params_schema=SCHEMA,
            irreversible=False,
            summary_template="Do {what}",
            connector_type="webhook",
            connector_config={"url": receiver.url},
            connector_secret=SECRET,
        ).instance
    agent = agent_services.agent_apply(slug="bench-agent", name="Bench agent", owner=owner).instance
    for action in actions.values():
        agent_services.grant_apply(agent=agent, action_type=action)
    version = agent_services.behaviour_version_create(
        agent=agent,
        policy=[
            {"id": "review", "action": "bench.review", "outcome": "review"},
            {"id": "routine", "action": "bench.auto", "outcome": "allow"},
        ],
    )
    agent = agent_services.behaviour_version_activate(version=version)
    key = agent_services.agent_key_issue(agent=agent).key
    return agent, key, actions, reviewer


def create(agent, key, action, n: int, *, release: bool = True) -> Decision:
    return services.decision_create(
        agent=agent,
        action_type=action,
        key=key,
        params={"what": f"item {n}"},
        reasoning="bench",
        release=release,
    )


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def latency(agent, key, action, reviewer, receiver: Receiver) -> dict:
    from_return, approve_ms, from_call = [], [], []
    for n in range(WARMUP + LATENCY_N):
        decision = create(agent, key, action, n)
        called = time.perf_counter()
        services.decision_approve(decision=decision, reviewer=reviewer)
        returned = time.perf_counter()
        arrived = receiver.wait(str(decision.pk))
        if n >= WARMUP:
            from_return.append((arrived - returned) * 1000)
            approve_ms.append((returned - called) * 1000)
            from_call.append((arrived - called) * 1000)
    return {"latency": from_return, "approve": approve_ms, "from_call": from_call}


def _wait_released(pending, what: str) -> float:
    deadline = time.monotonic() + TIMEOUT
    while pending():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for the {what} releases")
        time.sleep(0.05)
    return time.perf_counter()


class Profile:
    """py-spy on the worker and its children, only while a block runs (PYSPY=1)."""

    def __init__(self, worker: "Worker", path: Path):
        self.worker, self.path, self.parts = worker, path, []

    def __enter__(self):
        if PYSPY:
            part = self.path.with_suffix(f".{len(self.parts)}")
            self.parts.append(part)
            self.popen = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "py-spy"),
                    *("record", "--pid", str(self.worker.popen.pid), "--subprocesses"),
                    *("--rate", "200", "--format", "raw", "--nonblocking", "--output", str(part)),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        return self

    def __exit__(self, *exc):
        if PYSPY:
            self.popen.send_signal(signal.SIGINT)
            self.popen.wait(timeout=30)

    def summary(self) -> str:
        if not self.parts:
            return ""
        self.path.write_text("".join(p.read_text() for p in self.parts if p.exists()))
        return subprocess.run(
            [sys.executable, str(ROOT / "bench" / "flame_summary.py"), str(self.path), "15"],
            capture_output=True,
            text=True,
        ).stdout


def aispm_round(agent, key, action, receiver: Receiver, profile: Profile) -> dict:
    ids = [str(create(agent, key, action, n, release=False).pk) for n in range(THROUGHPUT_N)]
    decisions = Decision.objects.filter(pk__in=ids)
    assert decisions.filter(status="approved").count() == THROUGHPUT_N
    delivered_before = receiver.deliveries
    with profile:
        started = time.perf_counter()
        for decision_id in ids:
            tasks.release_decision.delay(decision_id)
        enqueued = time.perf_counter()
        finished = _wait_released(
            lambda: decisions.filter(status__in=["approved", "releasing"]).exists(), "aispm"
        )
    released = decisions.filter(status="released").count()
    return {
        "enqueue_s": enqueued - started,
        "total_s": finished - started,
        "rate": THROUGHPUT_N / (finished - started),
        "released": released,
        "other": THROUGHPUT_N - released,
        "deliveries": receiver.deliveries - delivered_before,
        "distinct": sum(1 for decision_id in ids if decision_id in receiver.arrivals),
        "retried": decisions.filter(release_attempts__gt=1).count(),
    }


def floor_rows(receiver: Receiver, n: int) -> list[int]:
    """n rows ready to release, each with the payload aispm's webhook connector sends."""
    rows = [
        json.dumps(
            {
                "type": "decision.approved",
                "decision_id": str(uuid.uuid4()),
                "action": "bench.auto",
                "agent": "bench-agent",
                "params": {"what": f"item {i}"},
                "external_ref": "",
            }
        )
        for i in range(n)
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            f"insert into {release_floor.TABLE} (status, url, secret, payload)"
            " select 'approved', %s, %s, p::jsonb from unnest(%s::text[]) as p returning id",
            [receiver.url, SECRET, rows],
        )
        return [row[0] for row in cursor.fetchall()]


def floor_round(receiver: Receiver) -> dict:
    ids = floor_rows(receiver, THROUGHPUT_N)
    delivered_before = receiver.deliveries

    def pending() -> bool:
        with connection.cursor() as cursor:
            cursor.execute(
                f"select exists(select 1 from {release_floor.TABLE}"
                " where id = any(%s) and status in ('approved', 'releasing'))",
                [ids],
            )
            return cursor.fetchone()[0]

    started = time.perf_counter()
    for row_id in ids:
        release_floor.release_floor.delay(row_id)
    finished = _wait_released(pending, "floor")
    with connection.cursor() as cursor:
        cursor.execute(
            f"select count(*) from {release_floor.TABLE}"
            " where id = any(%s) and status = 'released'",
            [ids],
        )
        released = cursor.fetchone()[0]
    return {
        "total_s": finished - started,
        "rate": THROUGHPUT_N / (finished - started),
        "released": released,
        "deliveries": receiver.deliveries - delivered_before,
    }


def queries_per_release(agent, key, action, receiver: Receiver) -> dict:
    decision = create(agent, key, action, 0, release=False)
    with CaptureQueriesContext(connection) as aispm:
        outcome = tasks.release_decision.run(str(decision.pk))
    assert outcome == Decision.Status.RELEASED, outcome
    [row_id] = floor_rows(receiver, 1)
    with CaptureQueriesContext(connection) as floor:
        assert release_floor.release_floor.run(row_id) == "released"
    return {"aispm": len(aispm.captured_queries), "floor": len(floor.captured_queries)}


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("AISPM_KEY")
local n = 0
local seed = 0
function init(args)
  local addr = tonumber(tostring({}):match("0x(%x+)") or "0", 16) or 0
  math.randomseed(os.time() + addr % 1000003)
  seed = math.random(1, 1000000000)
end
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, string.format(
    '{"action":"bench.auto","params":{"what":"http %d-%d"},' ..
    '"reasoning":"bench: routine, allowed by policy"}', seed, n))
end
"""


class WebServer:
    """aispm's web process as the README deploys it (granian, 4 x 1), on this database."""

    def __init__(self, log_path: Path):
        self.port = _free_port()
        env = dict(os.environ, ALLOWED_HOSTS="127.0.0.1", SECURE_SSL_REDIRECT="false")
        self.popen = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "granian"),
                *("--interface", "wsgi", "--host", "127.0.0.1", "--port", str(self.port)),
                *("--workers", "4", "--blocking-threads", "1", "--log-level", "warning"),
                "aispm_site.wsgi:application",
            ],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_path.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/healthz/", timeout=1).read()
                break
            except OSError:
                if self.popen.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    tail = log_path.read_text()[-3000:]
                    raise SystemExit(f"granian did not start:\n{tail}") from None
                time.sleep(0.2)

    def stop(self):
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            self.popen.wait(timeout=15)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def mixed_load(agent, key_obj, action) -> dict:
    """Allowed decisions at MIXED_RATE a second for MIXED_SECONDS, releases running.
    With MIXED_HTTP=1, over HTTP instead, as fast as 16 connections go (wrk against
    aispm's web process): the ingest rate of allowed decisions, on the same cores."""
    backlog_of = Decision.objects.filter(
        action_type=action, status__in=["approved", "releasing"]
    ).count
    start = time.perf_counter()
    submitted, samples, next_sample = 0, [], 0.0
    if MIXED_HTTP:
        log_dir = Path(tempfile.mkdtemp(prefix="aispm-release-http-"))
        script = log_dir / "allowed.lua"
        script.write_text(WRK_SCRIPT)
        web = WebServer(log_dir / "granian.log")
        before = Decision.objects.filter(action_type=action).count()
        env = dict(os.environ, AISPM_KEY=agent_services.agent_key_issue(agent=agent).secret)
        start = time.perf_counter()
        load = subprocess.Popen(
            [
                *("wrk", "-t2", "-c16", f"-d{MIXED_SECONDS:.0f}s", "-s", str(script)),
                f"{web.url}/api/v1/decisions/",
            ],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        while load.poll() is None:
            elapsed = time.perf_counter() - start
            if elapsed >= next_sample:
                samples.append((round(elapsed), backlog_of()))
                next_sample += 1.0
            time.sleep(0.05)
        # Requests wrk left in flight finish (and enqueue their releases) before the web
        # process stops; one stopped between its commit and its enqueue would wait for
        # the sweeper, which this bench does not run.
        time.sleep(2)
        web.stop()
        if "Non-2xx" in load.stdout.read():
            raise SystemExit("aispm refused some of the mixed load's submissions")
        submitted = Decision.objects.filter(action_type=action).count() - before
    while not MIXED_HTTP and (elapsed := time.perf_counter() - start) < MIXED_SECONDS:
        if elapsed >= next_sample:
            samples.append((round(elapsed), backlog_of()))
            next_sample += 1.0
        ahead = submitted / MIXED_RATE - elapsed
        if ahead > 0:
            time.sleep(min(ahead, 0.05))
            continue
        services.decision_submit(
            key=key_obj,
            action=action.key,
            params={"what": f"mixed {submitted}"},
            reasoning="bench: routine, allowed by policy",
        )
        submitted += 1
    stopped = time.perf_counter()
    peak_at_stop = backlog_of()
    samples.append((round(stopped - start), peak_at_stop))
    deadline = stopped + TIMEOUT
    while (backlog := backlog_of()) and time.perf_counter() < deadline:
        time.sleep(0.1)
    drained = time.perf_counter()
    return {
        "submitted": submitted,
        "rate": submitted / (stopped - start),
        "samples": samples,
        "at_stop": peak_at_stop,
        "peak": max(count for _, count in samples),
        "drain_s": drained - stopped,
        "left": backlog,
        "released": Decision.objects.filter(action_type=action, status="released").count(),
    }


def main():
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    with connection.cursor() as cursor:
        cursor.execute(release_floor.CREATE)
    receiver = Receiver()
    agent, key, actions, reviewer = world(receiver)
    log_dir = Path(tempfile.mkdtemp(prefix="aispm-release-bench-"))
    worker = Worker(concurrency=CONCURRENCY, log_path=log_dir / "worker.log")
    profile = Profile(worker, log_dir / "release.spy")
    load_before = os.getloadavg()[0]
    rounds = []
    try:
        a = latency(agent, key, actions["bench.review"], reviewer, receiver)
        for _ in range(ROUNDS):
            floor = floor_round(receiver)
            ours = aispm_round(agent, key, actions["bench.auto"], receiver, profile)
            rounds.append((floor, ours))
        c = queries_per_release(agent, key, actions["bench.auto"], receiver)
        d = mixed_load(agent, key, actions["bench.auto"]) if MIXED_SECONDS > 0 else None
    finally:
        worker.stop()
        redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    load_after = os.getloadavg()[0]
    lat, app = a["latency"], a["approve"]
    p50, p95 = statistics.median(lat), percentile(lat, 95)
    db = settings.DATABASES["default"]["NAME"]
    print(f"release benchmark: PostgreSQL {db}, broker {settings.CELERY_BROKER_URL},")
    print(f"  1 worker, --pool {POOL} --concurrency {CONCURRENCY}, loopback keep-alive receiver")
    print()
    print(f"(a) approve returned -> receiver read the request, {LATENCY_N} decisions one by one")
    print(f"    {'':24}{'p50':>9}{'p95':>9}{'max':>9}{'mean':>9}")
    rows = (
        ("approve returned → recv", lat),
        ("approve called → recv", a["from_call"]),
        ("decision_approve() itself", app),
    )
    for label, values in rows:
        print(
            f"    {label:24}{statistics.median(values):>7.1f}ms{percentile(values, 95):>7.1f}ms"
            f"{max(values):>7.1f}ms{statistics.fmean(values):>7.1f}ms"
        )
    verdict = "ok" if p50 <= TARGET_P50_MS and p95 <= TARGET_P95_MS else "MISSED"
    print(f"    target p50 ≤ {TARGET_P50_MS:.0f} ms, p95 ≤ {TARGET_P95_MS:.0f} ms: {verdict}")
    print()
    print(f"(b) {THROUGHPUT_N} releases a round, all enqueued at once, floor then aispm")
    ratios = []
    for n, (floor, ours) in enumerate(rounds, 1):
        ratios.append(ours["rate"] / floor["rate"])
        print(
            f"    round {n}: floor {floor['rate']:7.1f}/s ({floor['released']} released,"
            f" {floor['deliveries']} deliveries); aispm {ours['rate']:7.1f}/s"
            f" ({ours['released']} released, {ours['other']} other, {ours['deliveries']}"
            f" deliveries, {ours['distinct']} distinct, {ours['retried']} retried);"
            f" ratio {ratios[-1]:.3f}"
        )
    floor_rate = statistics.median(f["rate"] for f, _ in rounds)
    aispm_rate = statistics.median(o["rate"] for _, o in rounds)
    ratio = statistics.median(ratios)
    print(f"    median: floor {floor_rate:.1f}/s, aispm {aispm_rate:.1f}/s, ratio {ratio:.3f}")
    print()
    print(f"(c) queries a release: aispm {c['aispm']}, floor {c['floor']}")
    if d is not None:
        print()
        print(
            f"(d) mixed load: {d['submitted']} allowed decisions in {MIXED_SECONDS:.0f} s"
            + (
                " over HTTP (wrk, 16 connections, as fast as they go)"
                if MIXED_HTTP
                else f" ({d['rate']:.1f}/s of {MIXED_RATE:.0f}/s asked)"
            )
            + ", releases running"
        )
        print("    backlog (approved or releasing) by second:")
        every = max(1, len(d["samples"]) // 12)
        shown = d["samples"][::every] + ([d["samples"][-1]] if len(d["samples"]) % every else [])
        print("    " + "  ".join(f"{t}s:{n}" for t, n in shown))
        verdict = "ok" if d["drain_s"] <= DRAIN_GOAL_S and not d["left"] else "MISSED"
        print(
            f"    backlog at stop {d['at_stop']}, peak {d['peak']}; drained in"
            f" {d['drain_s']:.1f} s (goal ≤ {DRAIN_GOAL_S:.0f} s): {verdict}"
        )
    summary = profile.summary()
    if summary:
        print()
        print("py-spy, the worker during aispm's throughput rounds:")
        print(summary.rstrip())
    mixed = (
        f"; mixed {'HTTP ' if MIXED_HTTP else ''}{d['rate']:.0f}/s x {MIXED_SECONDS:.0f} s:"
        f" backlog at stop {d['at_stop']},"
        f" peak {d['peak']}, drained in {d['drain_s']:.1f} s"
        if d is not None
        else ""
    )
    print()
    print(
        f"summary: release {time.strftime('%Y-%m-%d', time.gmtime())} commit {commit}:"
        f" aispm {aispm_rate:.1f}/s, floor {floor_rate:.1f}/s, ratio {ratio:.3f}"
        f" (median of {ROUNDS} x {THROUGHPUT_N}, {POOL} {CONCURRENCY});"
        f" queries/release {c['aispm']} vs {c['floor']}; approve->receiver p50 {p50:.0f} ms"
        f" p95 {p95:.0f} ms{mixed}; load {load_before:.1f}->{load_after:.1f}"
        f" on {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()
