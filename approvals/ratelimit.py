"""Per-grant hourly limits.

With Redis configured, a fixed one-hour window counter per agent and action: one
Lua script counts the attempt and sets the counter's expiry in one round trip, and
atomically, so no counter can outlive its window. Without Redis, or while Redis is
unreachable, the same window is counted from the decisions table, which is exact but
costs a query.
"""

import logging
from datetime import datetime, timedelta

import redis
from django.conf import settings

from .models import Decision

log = logging.getLogger(__name__)
WINDOW_SECONDS = 3600
# INCR, and EXPIRE on the first count of a window, as one command.
COUNT_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""
# Take back one count of a window, if that window's counter still exists (a missing
# counter is never created, so no counter can lose its expiry).
UNCOUNT_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('DECR', KEYS[1]) end
return 0
"""
_clients: dict[str, tuple[redis.Redis, object]] = {}
_uncount_scripts: dict[redis.Redis, object] = {}


def _redis() -> tuple[redis.Redis, object] | None:
    """The client for AISPM_REDIS_URL and the counting script, made once per process."""
    url = getattr(settings, "AISPM_REDIS_URL", None)
    if not url:
        return None
    if url not in _clients:
        client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        # Script calls EVALSHA, and EVAL once if Redis does not know the script yet.
        _clients[url] = (client, client.register_script(COUNT_SCRIPT))
    return _clients[url]


def _window(now: datetime) -> tuple[int, int]:
    """(window number, seconds until the window ends)."""
    epoch = int(now.timestamp())
    return epoch // WINDOW_SECONDS, WINDOW_SECONDS - epoch % WINDOW_SECONDS


def _key(agent, action_type, window: int) -> str:
    return f"aispm:rate:{agent.pk}:{action_type.pk}:{window}"


def check_and_count(*, agent, action_type, limit: int | None, now: datetime) -> int | None:
    """Count this attempt; return the seconds to wait if it is over the limit, else None."""
    if not limit:
        return None
    window, remaining = _window(now)
    found = _redis()
    if found is not None:
        _, count_script = found
        key = _key(agent, action_type, window)
        try:
            count = count_script(keys=[key], args=[WINDOW_SECONDS + 60])
            return remaining if count > limit else None
        except redis.RedisError:
            log.warning("rate limit: Redis unavailable, counting from the database")
    window_start = now - timedelta(seconds=WINDOW_SECONDS - remaining)
    used = Decision.objects.filter(
        agent=agent, action_type=action_type, created_at__gte=window_start, canary=False
    ).count()
    return remaining if used >= limit else None


def uncount(*, agent, action_type, now: datetime) -> None:
    """Take back the attempt check_and_count counted at `now`: a submission that turned
    out to replay an idempotency key uses none of the hourly limit. Counting from the
    database needs nothing taken back (a replay stores no row)."""
    found = _redis()
    if found is None:
        return
    client, _ = found
    if client not in _uncount_scripts:
        _uncount_scripts[client] = client.register_script(UNCOUNT_SCRIPT)
    try:
        _uncount_scripts[client](keys=[_key(agent, action_type, _window(now)[0])])
    except redis.RedisError:
        log.warning("rate limit: Redis unavailable, a replay stays counted")
