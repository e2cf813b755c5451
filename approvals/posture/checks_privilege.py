"""Least privilege: grants that are unused, unconstrained or far above real use."""

from collections import defaultdict
from datetime import datetime

from django.db.models import Count
from django.db.models.functions import TruncHour

from agents.models import Agent, Grant

from ..models import Decision
from .common import WINDOW, setting, url
from .registry import Hit, check

# Parameters that move money or pick who receives something.
SENSITIVE_PARAMS = {
    "amount",
    "to",
    "cc",
    "bcc",
    "recipient",
    "recipients",
    "beneficiary",
    "iban",
    "account",
    "url",
}
LIMIT_FACTOR = 10


def _live_grants():
    return Grant.objects.filter(agent__status=Agent.Status.ACTIVE).select_related(
        "agent", "action_type"
    )


def _used(now: datetime) -> set[tuple]:
    return set(
        Decision.objects.filter(created_at__gte=now - WINDOW, canary=False)
        .values_list("agent_id", "action_type_id")
        .distinct()
    )


@check(
    id="privilege.grant_unused",
    question="compromise",
    severity="low",
    title="A grant has not been used for 30 days",
)
def grant_unused(now: datetime) -> list[Hit]:
    used = _used(now)
    return [
        Hit(
            subject=f"{grant.agent.slug}:{grant.action_type.key}",
            agent=grant.agent,
            message=(
                f"{grant.agent.slug} may {grant.action_type.key} but has not asked to in 30 days; "
                f"remove the grant if it is not needed."
            ),
            evidence={"action": grant.action_type.key, "granted_at": grant.created_at},
            fix_url=url("security:scopes", grant.agent.slug),
        )
        for grant in _live_grants().filter(created_at__lte=now - WINDOW)
        if (grant.agent_id, grant.action_type_id) not in used
    ]


def sensitive_params(schema) -> list[str]:
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict):
        return []
    return sorted(name for name in properties if str(name).lower() in SENSITIVE_PARAMS)


@check(
    id="privilege.grant_unconstrained",
    question="compromise",
    severity="medium",
    title="A grant on money or recipients has no constraint",
)
def grant_unconstrained(now: datetime) -> list[Hit]:
    hits = []
    for grant in _live_grants().filter(constraint=""):
        params = sensitive_params(grant.action_type.params_schema)
        if not params:
            continue
        hits.append(
            Hit(
                subject=f"{grant.agent.slug}:{grant.action_type.key}",
                agent=grant.agent,
                message=(
                    f"{grant.agent.slug} may {grant.action_type.key} with any "
                    f"{', '.join(params)}: add a constraint that bounds them."
                ),
                evidence={"action": grant.action_type.key, "params": params},
                fix_url=url("security:grant-edit", grant.agent.slug, grant.action_type.key),
            )
        )
    return hits


def hourly_peaks(now: datetime) -> dict[tuple, tuple[int, int]]:
    """(busiest hour, total) per agent × action over WINDOW."""
    hourly = (
        Decision.objects.filter(created_at__gte=now - WINDOW, canary=False)
        .annotate(hour=TruncHour("created_at"))
        .values("agent_id", "action_type_id", "hour")
        .annotate(n=Count("id"))
        .values("agent_id", "action_type_id", "n")
    )
    peaks: dict = defaultdict(lambda: (0, 0))
    for row in hourly:
        key = (row["agent_id"], row["action_type_id"])
        peak, total = peaks[key]
        peaks[key] = (max(peak, row["n"]), total + row["n"])
    return peaks


@check(
    id="privilege.limit_too_high",
    question="compromise",
    severity="low",
    title="An hourly limit is far above real use",
)
def limit_too_high(now: datetime) -> list[Hit]:
    """A grant whose hourly limit (or no limit) is above 10× the busiest hour in 30 days,
    once the grant has seen enough use for its peak to mean something."""
    peaks = hourly_peaks(now)
    minimum = setting("AISPM_POSTURE_LIMIT_MIN_DECISIONS")
    hits = []
    for grant in _live_grants():
        peak, total = peaks.get((grant.agent_id, grant.action_type_id), (0, 0))
        if total < minimum:
            continue  # too little use to judge; unused grants are grant_unused's
        limit = grant.limit_per_hour
        if limit is not None and limit <= LIMIT_FACTOR * peak:
            continue
        hits.append(
            Hit(
                subject=f"{grant.agent.slug}:{grant.action_type.key}",
                agent=grant.agent,
                message=(
                    f"{grant.agent.slug} {grant.action_type.key}: the limit is "
                    f"{'unlimited' if limit is None else f'{limit}/h'} while the busiest hour in "
                    f"30 days had {peak}; {LIMIT_FACTOR * peak}/h would be ample."
                ),
                evidence={
                    "action": grant.action_type.key,
                    "limit": limit,
                    "peak": peak,
                    "decisions": total,
                },
                fix_url=url("security:grant-edit", grant.agent.slug, grant.action_type.key),
            )
        )
    return hits
