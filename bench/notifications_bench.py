"""Notifications benchmark: run it through `bench/notifications`.

1. Request path: N pending decisions are created with decision_create, each in its own
   transaction, with RECIPIENTS reviewers on immediate email, alternating notifications
   on and off (AISPM_NOTIFICATIONS_ENABLED) so that both see the same database; a real
   Redis broker and no worker. Reports p50/p95 per submission, the difference, and the
   Redis queue length afterwards: the submission enqueues nothing, beat's sweep starts
   the notifying.
2. Worker side: runs beat's sweep (notify_new_decisions) and every send task it
   enqueues, in this process, over the N pending decisions (locmem email, so the figure
   is aispm's own cost, not an SMTP server's); reports the SQL statements per decision
   (counted with a connection execute wrapper, which sees savepoints but not the
   driver's BEGIN and COMMIT), the worker process's own CPU time, decisions per
   second per worker process and the processes needed at 100 decisions/s.
"""

import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aispm_site.settings")

import django  # noqa: E402

django.setup()

import redis  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.models import Group  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from agents.models import ActionType, Agent, BehaviourVersion, Grant  # noqa: E402
from approvals import services  # noqa: E402
from approvals.models import Decision, Notification  # noqa: E402
from approvals.notifications import preference_save  # noqa: E402
from approvals.notifications import tasks as notification_tasks  # noqa: E402

N = int(os.environ.get("N", "1000"))
RECIPIENTS = int(os.environ.get("RECIPIENTS", "5"))
RATE = 100


def world():
    agent = Agent.objects.create(slug="bench", name="Bench")
    version = BehaviourVersion.objects.create(
        agent=agent,
        number=1,
        instructions="",
        content_hash="0" * 64,
        policy=[{"id": "all", "outcome": "review", "risk": "high"}],
    )
    agent.active_behaviour = version
    agent.save()
    action = ActionType.objects.create(
        key="thing.do",
        name="Do",
        summary_template="Do {what}",
        params_schema={"type": "object", "properties": {"what": {"type": "string"}}},
    )
    Grant.objects.create(agent=agent, action_type=action)
    reviewers = Group.objects.get(name="Reviewers")
    for i in range(RECIPIENTS):
        user = get_user_model().objects.create_user(f"r{i}", f"r{i}@example.com", "x")
        user.groups.add(reviewers)
        preference_save(actor=user, user=user, channel="email", mode="immediate", min_risk="low")
    return agent, action


def submit_times(agent, action) -> tuple[list[float], list[float]]:
    on, off = [], []
    for i in range(2 * N):
        enabled = i % 2 == 0
        settings.AISPM_NOTIFICATIONS_ENABLED = enabled
        started = time.perf_counter()
        with transaction.atomic():
            services.decision_create(
                agent=agent, action_type=action, params={"what": f"x{i}"}, reasoning="r"
            )
        (on if enabled else off).append((time.perf_counter() - started) * 1000)
    settings.AISPM_NOTIFICATIONS_ENABLED = True
    return on, off


def pct(values, p):
    ordered = sorted(values)
    return ordered[max(0, int(round(p / 100 * len(ordered))) - 1)]


def main():
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.flushdb()
    agent, action = world()
    submit_times(agent, action)  # warm up
    Decision.objects.update(status=Decision.Status.CANCELLED)
    client.flushdb()
    on, off = submit_times(agent, action)
    depth = client.llen("celery")
    print(f"request path, {N} submissions each (PostgreSQL, Redis broker, no worker):")
    for name, values in (("notifications on", on), ("notifications off", off)):
        print(f"  {name:18} p50 {pct(values, 50):6.2f} ms  p95 {pct(values, 95):6.2f} ms")
    print(f"  difference p50 {pct(on, 50) - pct(off, 50):+.2f} ms; broker queue: {depth} messages")

    # Worker side: fan-out and sends, in process.
    settings.CELERY_TASK_ALWAYS_EAGER = True
    pending = list(Decision.objects.filter(status=Decision.Status.PENDING).values_list("pk"))
    Notification.objects.all().delete()
    statements = []

    def count(execute, sql, params, many, context):
        statements.append(1)
        return execute(sql, params, many, context)

    started, cpu_started = time.perf_counter(), time.process_time()
    with connection.execute_wrapper(count):
        while notification_tasks.notify_new_decisions():
            pass
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    sent = Notification.objects.filter(status=Notification.Status.SENT).count()
    per_second = len(pending) / elapsed
    print(f"worker side, {RECIPIENTS} recipients per decision (locmem email):")
    print(
        f"  {len(pending)} decisions, {sent} sent in {elapsed:.1f} s: "
        f"{per_second:.0f} decisions/s per process"
    )
    print(
        f"  {len(statements)} SQL statements: {len(statements) / len(pending):.1f} per decision; "
        f"this process's CPU {cpu:.1f} s ({cpu / len(pending) * 1000:.0f} ms per decision), "
        "the rest is waiting on PostgreSQL and for a core"
    )
    print(
        f"  at {RATE} decisions/s: {RATE * (1 + RECIPIENTS)} messages/s enqueued; "
        f"{statistics.fmean([RATE / per_second]):.2f} worker processes keep the queue flat"
    )
    client.flushdb()


if __name__ == "__main__":
    main()
