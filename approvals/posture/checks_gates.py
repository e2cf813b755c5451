"""Approval gates: rules that never gate, gates nobody can pass, queues that expire."""

from collections import defaultdict
from datetime import datetime

from django.contrib.auth import get_user_model
from django.db.models import Count, Q

from agents.models import ActionType, Agent
from aispm_site import roles

from ..models import Decision
from .common import WINDOW, percentile, setting, url
from .registry import Hit, check


def _active_agents():
    return Agent.objects.filter(status=Agent.Status.ACTIVE).select_related(
        "active_behaviour", "owner"
    )


@check(
    id="gates.allow_always_true",
    question="prevent",
    severity="high",
    title="An allow rule lets everything through",
)
def allow_always_true(now: datetime) -> list[Hit]:
    """An allow rule whose condition is always true in practice: more than N decisions
    allowed in 30 days and none of that agent's decisions of the action reviewed."""
    floor = setting("AISPM_POSTURE_ALLOW_MIN")
    since = now - WINDOW
    hits = []
    for agent in _active_agents():
        policy = agent.active_behaviour.policy if agent.active_behaviour else []
        allow_rules = [r for r in policy if isinstance(r, dict) and r.get("outcome") == "allow"]
        if not allow_rules:
            continue
        counts = (
            Decision.objects.filter(agent=agent, created_at__gte=since, canary=False)
            .values("action_type__key", "action_type__irreversible")
            .annotate(
                allowed=Count("id", filter=Q(approval=Decision.Approval.AUTO)),
                reviewed=Count("id", filter=Q(policy_outcome="review")),
            )
        )
        for row in counts:
            action = row["action_type__key"]
            rules = [r["id"] for r in allow_rules if r.get("action") in (action, "*", None)]
            if not rules or row["reviewed"] or row["allowed"] <= floor:
                continue
            irreversible = row["action_type__irreversible"]
            hits.append(
                Hit(
                    subject=f"{agent.slug}:{action}",
                    agent=agent,
                    severity="critical" if irreversible else "",
                    message=(
                        f"{agent.slug}: {row['allowed']} {action} decisions were allowed in 30 "
                        f"days and none went to review; the allow rule "
                        f"{', '.join(map(str, rules))} matches everything in practice."
                    ),
                    evidence={
                        "action": action,
                        "rules": rules,
                        "allowed": row["allowed"],
                        "reviewed": 0,
                        "irreversible": irreversible,
                    },
                    fix_url=url("agents:version-new", agent.slug),
                )
            )
    return hits


def eligible_reviewers(owner_id) -> int:
    users = get_user_model().objects.filter(is_active=True)
    users = users.filter(Q(groups__name=roles.REVIEWERS) | Q(is_superuser=True)).distinct()
    if owner_id is not None:
        users = users.exclude(pk=owner_id)
    return users.count()


@check(
    id="gates.approvals_unreachable",
    question="prevent",
    severity="high",
    title="A rule needs more approvers than exist",
)
def approvals_unreachable(now: datetime) -> list[Hit]:
    """A review rule needing N approvals while fewer than N people other than the agent's
    owner (who may not review it) can review: its decisions can only expire."""
    hits = []
    cache: dict = {}
    for agent in _active_agents():
        policy = agent.active_behaviour.policy if agent.active_behaviour else []
        if agent.owner_id not in cache:
            cache[agent.owner_id] = eligible_reviewers(agent.owner_id)
        available = cache[agent.owner_id]
        for rule in policy:
            if not isinstance(rule, dict) or rule.get("outcome") != "review":
                continue
            needed = int(rule.get("approvals", 1) or 1)
            if available >= needed:
                continue
            hits.append(
                Hit(
                    subject=f"{agent.slug}:{rule.get('id')}",
                    agent=agent,
                    message=(
                        f"{agent.slug}: rule {rule.get('id')} needs {needed} approvals but only "
                        f"{available} active reviewer(s) other than the owner exist, so its "
                        f"decisions can only expire."
                    ),
                    evidence={"rule": rule.get("id"), "needed": needed, "reviewers": available},
                    fix_url=url("admin:auth_user_changelist"),
                )
            )
    return hits


FINISHED = [
    Decision.Status.APPROVED,
    Decision.Status.REJECTED,
    Decision.Status.EXPIRED,
    Decision.Status.RELEASING,
    Decision.Status.RELEASED,
    Decision.Status.FAILED,
    Decision.Status.BLOCKED,
]


@check(
    id="gates.queue_expiring",
    question="prevent",
    severity="medium",
    title="A review queue is slower than its time-to-live",
)
def queue_expiring(now: datetime) -> list[Hit]:
    """A queue (agent × action) whose p95 time to decision over 30 days exceeds its ttl,
    counting an expired decision as never decided: its decisions expire unreviewed."""
    rows = (
        Decision.objects.filter(
            created_at__gte=now - WINDOW,
            policy_outcome="review",
            status__in=FINISHED,
            expires_at__isnull=False,
            canary=False,
        )
        .exclude(status=Decision.Status.REJECTED, decided_at__isnull=True)
        .values_list(
            "agent_id", "action_type_id", "status", "created_at", "decided_at", "expires_at"
        )
        .order_by("-created_at")[:20000]
    )
    queues: dict = defaultdict(lambda: ([], []))
    for agent_id, action_id, status, created, decided, expires in rows:
        waits, ttls = queues[(agent_id, action_id)]
        ttls.append((expires - created).total_seconds())
        if status == Decision.Status.EXPIRED or decided is None:
            waits.append(float("inf"))
        else:
            waits.append((decided - created).total_seconds())
    minimum = setting("AISPM_POSTURE_QUEUE_MIN_DECISIONS")
    agents = Agent.objects.in_bulk({key[0] for key in queues})
    actions = ActionType.objects.in_bulk({key[1] for key in queues})
    hits = []
    for (agent_id, action_id), (waits, ttls) in queues.items():
        if len(waits) < minimum:
            continue
        p95, ttl = percentile(waits, 0.95), percentile(ttls, 0.5)
        if p95 <= ttl:
            continue
        agent, action = agents[agent_id], actions[action_id]
        expired = sum(1 for wait in waits if wait == float("inf"))
        hits.append(
            Hit(
                subject=f"{agent.slug}:{action.key}",
                agent=agent,
                message=(
                    f"{agent.slug} {action.key}: the slowest 5% of reviews take longer than the "
                    f"{ttl / 3600:.1f} h time-to-live; {expired} of {len(waits)} expired."
                ),
                evidence={
                    "action": action.key,
                    "decisions": len(waits),
                    "expired": expired,
                    "p95_seconds": None if p95 == float("inf") else int(p95),
                    "ttl_seconds": int(ttl),
                },
                fix_url=url("approvals:inbox"),
            )
        )
    return hits
