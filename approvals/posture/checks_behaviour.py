"""Behaviour: regressions left standing, agents rejected too often, feedback unread."""

from datetime import datetime

from django.db.models import Count, Max, Min, Q

from agents.models import Agent, AgentKey, Alert

from ..models import Decision, Review
from .common import WEEK, setting, url
from .registry import Hit, check


@check(
    id="behaviour.regression_unacknowledged",
    question="update",
    severity="high",
    title="An active behaviour version has an unacknowledged regression alert",
)
def regression_unacknowledged(now: datetime) -> list[Hit]:
    hits = []
    agents = Agent.objects.filter(active_behaviour__isnull=False).select_related("active_behaviour")
    for agent in agents:
        subject = f"{agent.slug}:v{agent.active_behaviour.number}"
        alert = Alert.objects.filter(
            kind="behaviour_regression", subject=subject, acknowledged_at__isnull=True
        ).first()
        if alert is None:
            continue
        hits.append(
            Hit(
                subject=subject,
                agent=agent,
                message=f"{alert.message} The alert is not acknowledged.",
                evidence={"alert_id": alert.pk, "version": agent.active_behaviour.number},
                fix_url=url("security:alerts"),
            )
        )
    return hits


@check(
    id="behaviour.rejection_rate",
    question="update",
    severity="medium",
    title="Reviewers reject much of what an agent proposes",
)
def rejection_rate(now: datetime) -> list[Hit]:
    threshold = setting("AISPM_POSTURE_REJECTION_PERCENT") / 100
    minimum = setting("AISPM_POSTURE_REJECTION_MIN_REVIEWS")
    rows = (
        Decision.objects.filter(decided_at__gte=now - WEEK, approval__in=["human", ""])
        .filter(policy_outcome="review", canary=False)
        .values("agent")
        .annotate(
            rejected=Count("id", filter=Q(status=Decision.Status.REJECTED)),
            approved=Count("id", filter=Q(approval=Decision.Approval.HUMAN)),
        )
    )
    agents = Agent.objects.in_bulk([row["agent"] for row in rows])
    hits = []
    for row in rows:
        reviewed = row["rejected"] + row["approved"]
        if reviewed < minimum or row["rejected"] / reviewed <= threshold:
            continue
        agent = agents[row["agent"]]
        hits.append(
            Hit(
                subject=agent.slug,
                agent=agent,
                message=(
                    f"Reviewers rejected {row['rejected']} of {reviewed} of {agent.slug}'s "
                    f"decisions in 7 days ({row['rejected'] / reviewed:.0%}); its instructions "
                    f"or policy need work."
                ),
                evidence={"rejected": row["rejected"], "reviewed": reviewed},
                fix_url=url("agents:detail", agent.slug),
            )
        )
    return hits


@check(
    id="behaviour.feedback_unread",
    question="update",
    severity="low",
    title="An agent has not picked up reviewer feedback for 7 days",
    provisional="aispm does not record feedback reads yet; this uses the agent's last "
    "API call with any key as the latest possible read.",
)
def feedback_unread(now: datetime) -> list[Hit]:
    last_call = dict(
        AgentKey.objects.values("agent").annotate(at=Max("last_used_at")).values_list("agent", "at")
    )
    hits = []
    for agent in Agent.objects.filter(status=Agent.Status.ACTIVE):
        since = last_call.get(agent.pk)
        reviews = Review.objects.filter(decision__agent=agent, decision__canary=False)
        if since is not None:
            reviews = reviews.filter(created_at__gt=since)
        oldest = reviews.aggregate(at=Min("created_at"))["at"]
        if oldest is None or oldest > now - WEEK:
            continue
        hits.append(
            Hit(
                subject=agent.slug,
                agent=agent,
                message=(
                    f"{agent.slug} has not called aispm since reviewers gave feedback on "
                    f"{oldest:%Y-%m-%d}: it is not learning from its reviews."
                ),
                evidence={"oldest_unread": oldest, "last_call": since},
                fix_url=url("agents:detail", agent.slug),
            )
        )
    return hits
