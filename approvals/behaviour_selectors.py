"""Reads for behaviour versions: per-version metrics, and how a policy would route
decisions (dry runs, re-route previews)."""

import statistics
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Count, Q
from django.utils import timezone

from agents.models import Agent

from .models import Decision, Review

HUMAN_APPROVED = [
    Decision.Status.APPROVED,
    Decision.Status.RELEASING,
    Decision.Status.RELEASED,
    Decision.Status.FAILED,
    Decision.Status.BLOCKED,
]
MEDIAN_SAMPLE = 5000


def version_metrics(*, agent: Agent) -> list[dict]:
    """Per behaviour version: counts, rejection rate, median time to decision and the
    top reject reasons and tags, newest version first."""
    rows = (
        Decision.objects.filter(agent=agent, behaviour_version__isnull=False, canary=False)
        .values("behaviour_version")
        .annotate(
            decisions=Count("pk"),
            auto_allowed=Count("pk", filter=Q(approval=Decision.Approval.AUTO)),
            approved=Count(
                "pk", filter=Q(approval=Decision.Approval.HUMAN, status__in=HUMAN_APPROVED)
            ),
            rejected=Count("pk", filter=Q(status=Decision.Status.REJECTED)),
            expired=Count("pk", filter=Q(status=Decision.Status.EXPIRED)),
            denied=Count("pk", filter=Q(status=Decision.Status.DENIED)),
            pending=Count("pk", filter=Q(status=Decision.Status.PENDING)),
        )
        .order_by("-behaviour_version")
    )
    edited = dict(
        Review.objects.filter(
            decision__agent=agent, decision__canary=False, verdict=Review.Verdict.EDIT_APPROVE
        )
        .values("decision__behaviour_version")
        .annotate(n=Count("decision", distinct=True))
        .values_list("decision__behaviour_version", "n")
    )
    metrics = []
    for row in rows:
        number = row["behaviour_version"]
        reviewed = row["approved"] + row["rejected"]
        decided_by_people = Decision.objects.filter(
            Q(approval=Decision.Approval.HUMAN) | Q(status=Decision.Status.REJECTED),
            agent=agent,
            behaviour_version=number,
            decided_at__isnull=False,
            canary=False,
        ).values_list("created_at", "decided_at")[:MEDIAN_SAMPLE]
        durations = [(decided - created).total_seconds() for created, decided in decided_by_people]
        rejects = Review.objects.filter(
            decision__agent=agent,
            decision__behaviour_version=number,
            decision__canary=False,
            verdict=Review.Verdict.REJECT,
        ).values_list("comment", "tags")[:MEDIAN_SAMPLE]
        reasons, tags = Counter(), Counter()
        for comment, review_tags in rejects:
            reasons[" ".join(comment.split())[:200]] += 1
            tags.update(review_tags or [])
        metrics.append(
            {
                "version": number,
                **{k: v for k, v in row.items() if k != "behaviour_version"},
                "edited": edited.get(number, 0),
                "reviewed": reviewed,
                "rejection_rate": row["rejected"] / reviewed if reviewed else None,
                "median_seconds": statistics.median(durations) if durations else None,
                "top_reasons": reasons.most_common(5),
                "top_tags": tags.most_common(5),
            }
        )
    return metrics


# What a route decides, in the order a person reads a change of it.
ROUTE_PARTS = ("outcome", "rule", "approvals", "risk", "ttl", "bulk")
ROUTE_PART_LABELS = {
    "outcome": "outcome",
    "rule": "rule",
    "approvals": "approvals needed",
    "risk": "risk",
    "ttl": "time to expire",
    "bulk": "bulk approval",
}


def route_changes(decision: Decision, route) -> list[str]:
    """Which parts of `decision`'s routing `route` would change, in ROUTE_PARTS order.

    Approvals, risk, ttl and bulk matter only to a decision that waits for review, so
    they are compared only when both routes are reviews."""
    changes = []
    if route.outcome != decision.policy_outcome:
        changes.append("outcome")
    if (route.rule or "") != (decision.policy_rule or ""):
        changes.append("rule")
    if route.outcome == decision.policy_outcome == "review":
        if route.approvals != decision.required_approvals:
            changes.append("approvals")
        if route.risk != decision.risk:
            changes.append("risk")
        if decision.expires_at is not None and decision.created_at is not None:
            ttl = decision.expires_at - decision.created_at
            if abs((ttl - route.ttl).total_seconds()) >= 1:
                changes.append("ttl")
        if bool(route.bulk) != bool(decision.bulk_allowed):
            changes.append("bulk")
    return changes


@dataclass(frozen=True)
class PendingPreview:
    """What a policy would do to the agent's pending decisions if it were active now."""

    total: int
    rerouted: int  # still wait for review, on a different route
    cancelled: int  # the policy denies them
    unchanged: int
    kinds: dict  # part -> count, over the re-routed and cancelled


@dataclass(frozen=True)
class DryRun:
    replayed: int
    changed: int  # decisions with any part of their routing different
    transitions: dict  # (was, would be) -> count, outcome changes only
    kinds: dict  # part of the route -> how many decisions it changes for
    examples: dict  # (was, would be) -> [(decision, route, [parts]), ...], three each
    pending: PendingPreview | None = None


def _route_of(decision: Decision, version, agent: Agent):
    from . import policy

    return policy.route(
        version=version,
        agent=agent,
        action_type=decision.action_type,
        params=decision.params,
        evidence=decision.evidence,
        confidence=decision.confidence,
    )


def pending_reroute_preview(*, agent: Agent, version) -> PendingPreview:
    """Route every pending decision of `agent` through `version` without saving anything:
    how many would be re-routed, cancelled (denied) or left as they are."""
    rerouted = cancelled = unchanged = 0
    kinds = Counter()
    pending = Decision.objects.filter(agent=agent, status=Decision.Status.PENDING)
    for decision in pending.select_related("action_type"):
        route = _route_of(decision, version, agent)
        changes = route_changes(decision, route)
        if not changes:
            unchanged += 1
            continue
        kinds.update(changes)
        if route.outcome == "deny":
            cancelled += 1
        else:
            rerouted += 1
    return PendingPreview(
        total=rerouted + cancelled + unchanged,
        rerouted=rerouted,
        cancelled=cancelled,
        unchanged=unchanged,
        kinds={part: kinds[part] for part in ROUTE_PARTS if kinds[part]},
    )


def policy_dry_run(*, agent: Agent, policy_rules: list, days: int, limit: int = 5000) -> DryRun:
    """Replay the agent's decisions of the last `days` days through a candidate policy:
    how many would be routed differently in any part (outcome, rule, approvals, risk,
    ttl, bulk), and what it would do to the decisions pending now."""
    from agents.models import BehaviourVersion

    candidate = BehaviourVersion(agent=agent, policy=policy_rules)
    since = timezone.now() - timedelta(days=days)
    decisions = (
        Decision.objects.filter(agent=agent, created_at__gte=since, canary=False)
        .select_related("action_type")
        .order_by("-created_at")[:limit]
    )
    transitions, kinds = Counter(), Counter()
    examples = {}
    replayed = changed = 0
    for decision in decisions:
        replayed += 1
        route = _route_of(decision, candidate, agent)
        changes = route_changes(decision, route)
        if not changes:
            continue
        changed += 1
        kinds.update(changes)
        if "outcome" in changes:
            transitions[(decision.policy_outcome, route.outcome)] += 1
        bucket = examples.setdefault((decision.policy_outcome, route.outcome), [])
        if len(bucket) < 3:
            bucket.append((decision, route, changes))
    return DryRun(
        replayed=replayed,
        changed=changed,
        transitions=dict(transitions),
        kinds={part: kinds[part] for part in ROUTE_PARTS if kinds[part]},
        examples=examples,
        pending=pending_reroute_preview(agent=agent, version=candidate),
    )
