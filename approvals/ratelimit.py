"""Per-grant hourly limits.

With Redis configured, a fixed one-hour window counter per agent and action
(one INCR+EXPIRE round trip). Without Redis, or while Redis is unreachable, the
same window is counted from the decisions table, which is exact but costs a query.
"""

import logging
from datetime import datetime, timedelta

import redis
from django.conf import settings

from .models import Decision

log = logging.getLogger(__name__)
WINDOW_SECONDS = 3600
_client: redis.Redis | None = None


def _redis() -> redis.Redis | None:
    global _client
    url = getattr(settings, "AISPM_REDIS_URL", None)
    if not url:
        return None
    if _client is None:
        _client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
    return _client


def _window(now: datetime) -> tuple[int, int]:
    """(window number, seconds until the window ends)."""
    epoch = int(now.timestamp())
    return epoch // WINDOW_SECONDS, WINDOW_SECONDS - epoch % WINDOW_SECONDS


def check_and_count(*, agent, action_type, limit: int | None, now: datetime) -> int | None:
    """Count this attempt; return the seconds to wait if it is over the limit, else None."""
    if not limit:
        return None
    window, remaining = _window(now)
    client = _redis()
    if client is not None:
        key = f"aispm:rate:{agent.pk}:{action_type.pk}:{window}"
        try:
            count = client.incr(key)
            if count == 1:
                client.expire(key, WINDOW_SECONDS + 60)
            return remaining if count > limit else None
        except redis.RedisError:
            log.warning("rate limit: Redis unavailable, counting from the database")
    window_start = now - timedelta(seconds=WINDOW_SECONDS - remaining)
    used = Decision.objects.filter(
        agent=agent, action_type=action_type, created_at__gte=window_start, canary=False
    ).count()
    return remaining if used >= limit else None
