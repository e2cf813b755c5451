"""Release benchmark: a real Celery worker on Redis releasing to a loopback receiver.

Run it through `bench/release`, which creates the database, migrates it and sets the
environment. This script then, in one process:

1. creates a reviewer, two webhook action types, an agent, its grants, key and policy
   with the services;
2. starts a loopback receiver and one `celery worker --pool prefork --concurrency C`;
3. (a) latency: N times, creates a pending decision, approves it with decision_approve
   (which commits and enqueues after commit) and times from decision_approve returning
   to the receiver reading the request; one decision at a time, after WARMUP unmeasured;
4. (b) throughput: creates M auto-approved decisions with their enqueue suppressed, then
   enqueues all M release tasks and times from the first enqueue until all M are
   released in the database.
"""

import http.server
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
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

from agents import services as agent_services  # noqa: E402
from aispm_site.celery import app as celery_app  # noqa: E402
from approvals import services, tasks  # noqa: E402
from approvals.models import Decision  # noqa: E402

LATENCY_N = int(os.environ.get("LATENCY_N", "200"))
WARMUP = int(os.environ.get("WARMUP", "10"))
THROUGHPUT_N = int(os.environ.get("THROUGHPUT_N", "5000"))
CONCURRENCY = int(os.environ.get("CONCURRENCY", "2"))
TIMEOUT = float(os.environ.get("TIMEOUT", "900"))
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
                *("--pool", "prefork", "--concurrency", str(concurrency), "-n", self.nodename),
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
            connector_secret="whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
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


def throughput(agent, key, action, receiver: Receiver) -> dict:
    ids = [str(create(agent, key, action, n, release=False).pk) for n in range(THROUGHPUT_N)]
    assert Decision.objects.filter(action_type=action, status="approved").count() == THROUGHPUT_N
    delivered_before = receiver.deliveries
    decisions = Decision.objects.filter(action_type=action)
    started = time.perf_counter()
    for decision_id in ids:
        tasks.release_decision.delay(decision_id)
    enqueued = time.perf_counter()
    deadline = time.monotonic() + TIMEOUT
    while decisions.filter(status__in=["approved", "releasing"]).exists():
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for the releases")
        time.sleep(0.05)
    finished = time.perf_counter()
    return {
        "enqueue_s": enqueued - started,
        "total_s": finished - started,
        "released": decisions.filter(status="released").count(),
        "other": THROUGHPUT_N - decisions.filter(status="released").count(),
        "deliveries": receiver.deliveries - delivered_before,
        "distinct": sum(1 for decision_id in ids if decision_id in receiver.arrivals),
        "retried": decisions.filter(release_attempts__gt=1).count(),
    }


def main():
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    receiver = Receiver()
    agent, key, actions, reviewer = world(receiver)
    log_dir = Path(tempfile.mkdtemp(prefix="aispm-release-bench-"))
    worker = Worker(concurrency=CONCURRENCY, log_path=log_dir / "worker.log")
    try:
        a = latency(agent, key, actions["bench.review"], reviewer, receiver)
        b = throughput(agent, key, actions["bench.auto"], receiver)
    finally:
        worker.stop()
        redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    lat, app = a["latency"], a["approve"]
    p50, p95 = statistics.median(lat), percentile(lat, 95)
    db = settings.DATABASES["default"]["NAME"]
    print(f"release benchmark: PostgreSQL {db}, broker {settings.CELERY_BROKER_URL},")
    print(f"  1 worker, --pool prefork --concurrency {CONCURRENCY}, loopback webhook receiver")
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
    print(f"(b) {THROUGHPUT_N} approved decisions, all enqueued at once")
    print(f"    enqueue all          {b['enqueue_s']:>8.2f} s")
    print(f"    enqueue → all done   {b['total_s']:>8.2f} s")
    print(f"    throughput           {THROUGHPUT_N / b['total_s']:>8.1f} releases/s")
    print(f"    released / other     {b['released']:>8} / {b['other']}")
    print(f"    deliveries (distinct) {b['deliveries']:>7} ({b['distinct']})")
    print(f"    retried              {b['retried']:>8}")


if __name__ == "__main__":
    main()
