"""Shared windows, thresholds and fix links of the posture checks."""

from datetime import timedelta

from django.conf import settings
from django.urls import NoReverseMatch, reverse

WINDOW = timedelta(days=30)
WEEK = timedelta(days=7)

DEFAULTS = {
    # gates.allow_always_true: more auto-allowed decisions than this in WINDOW, none reviewed.
    "AISPM_POSTURE_ALLOW_MIN": 20,
    # privilege.limit_too_high: decisions in WINDOW before a grant's busiest hour counts.
    "AISPM_POSTURE_LIMIT_MIN_DECISIONS": 50,
    # credentials.key_many_addresses
    "AISPM_POSTURE_MAX_ADDRESSES": 3,
    # behaviour.rejection_rate: percent rejected of reviewed in WEEK, over a minimum count.
    "AISPM_POSTURE_REJECTION_PERCENT": 40,
    "AISPM_POSTURE_REJECTION_MIN_REVIEWS": 10,
    # access.too_many_superusers
    "AISPM_POSTURE_MAX_SUPERUSERS": 2,
    # gates.queue_expiring: decided or expired decisions a queue needs before its p95 counts.
    "AISPM_POSTURE_QUEUE_MIN_DECISIONS": 5,
}
MIN_RETENTION_DAYS = 183
VERIFY_MAX_AGE = timedelta(hours=25)


def setting(name: str):
    return getattr(settings, name, DEFAULTS.get(name))


def url(name: str, *args) -> str:
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return ""


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-int(fraction * 100) * len(ordered) // 100))
    return ordered[min(rank, len(ordered)) - 1]
