"""Credentials: old keys, idle keys, keys beside keys, keys used from many places."""

from collections import defaultdict
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Q

from agents.models import Agent, AgentKey, SeenAddress

from .common import WINDOW, setting, url
from .registry import Hit, check


def live_keys(now: datetime):
    return (
        AgentKey.objects.filter(agent__status=Agent.Status.ACTIVE)
        .filter(Q(revoked_at__isnull=True) | Q(revoked_at__gt=now))
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .select_related("agent")
    )


def _key_hit(key: AgentKey, message: str, **evidence) -> Hit:
    return Hit(
        subject=f"key:{key.pk}",
        agent=key.agent,
        message=message,
        evidence={"key_id": key.pk, "prefix": key.prefix, **evidence},
        fix_url=url("security:keys", key.agent.slug),
    )


@check(
    id="credentials.key_too_old",
    question="compromise",
    severity="medium",
    title="A key is older than the maximum age",
)
def key_too_old(now: datetime) -> list[Hit]:
    days = settings.AISPM_KEY_MAX_AGE_DAYS
    return [
        _key_hit(
            key,
            f"Key {key.prefix}… of {key.agent.slug} is older than {days} days; rotate it.",
            created_at=key.created_at,
            max_age_days=days,
        )
        for key in live_keys(now).filter(created_at__lte=now - timedelta(days=days))
    ]


@check(
    id="credentials.key_unused",
    question="compromise",
    severity="low",
    title="A key has not been used for 30 days",
)
def key_unused(now: datetime) -> list[Hit]:
    since = now - WINDOW
    keys = live_keys(now).filter(created_at__lte=since)
    keys = keys.filter(Q(last_used_at__isnull=True) | Q(last_used_at__lt=since))
    return [
        _key_hit(
            key,
            f"Key {key.prefix}… of {key.agent.slug} has not been used for 30 days; revoke it.",
            last_used_at=key.last_used_at,
        )
        for key in keys
    ]


@check(
    id="credentials.keys_overlap",
    question="compromise",
    severity="medium",
    title="An agent has more than one active key",
)
def keys_overlap(now: datetime) -> list[Hit]:
    """More than one key with no end date: a key being rotated out has a revoked_at in
    the future and does not count."""
    lasting = defaultdict(list)
    for key in live_keys(now).filter(revoked_at__isnull=True):
        lasting[key.agent].append(key)
    return [
        Hit(
            subject=agent.slug,
            agent=agent,
            message=(
                f"{agent.slug} has {len(keys)} active keys outside a rotation overlap; "
                f"revoke the ones it no longer uses."
            ),
            evidence={"keys": [key.prefix for key in keys]},
            fix_url=url("security:keys", agent.slug),
        )
        for agent, keys in lasting.items()
        if len(keys) > 1
    ]


@check(
    id="credentials.key_many_addresses",
    question="compromise",
    severity="medium",
    title="An agent's keys are used from many addresses",
)
def key_many_addresses(now: datetime) -> list[Hit]:
    """Addresses are recorded per agent for agents with a new_ip anomaly rule."""
    limit = setting("AISPM_POSTURE_MAX_ADDRESSES")
    counts = (
        SeenAddress.objects.filter(agent__status=Agent.Status.ACTIVE)
        .values("agent")
        .annotate(n=Count("id"))
        .filter(n__gt=limit)
    )
    agents = Agent.objects.in_bulk([row["agent"] for row in counts])
    return [
        Hit(
            subject=agents[row["agent"]].slug,
            agent=agents[row["agent"]],
            message=(
                f"{agents[row['agent']].slug}'s keys were used from {row['n']} addresses "
                f"(more than {limit}); check that the key has not leaked."
            ),
            evidence={"addresses": row["n"], "limit": limit},
            fix_url=url("security:keys", agents[row["agent"]].slug),
        )
        for row in counts
    ]
