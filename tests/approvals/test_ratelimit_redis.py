"""The hourly limit counted in Redis: exact, one round trip, and never an immortal counter.

Uses the Redis database AISPM_ITEST_REDIS_DB (default 7), flushed before and after.
"""

import os
from datetime import UTC, datetime, timedelta

import pytest
import redis

from approvals import ratelimit
from tests.factories import ActionTypeFactory, AgentFactory

pytestmark = pytest.mark.django_db
REDIS_URL = f"redis://127.0.0.1:6379/{int(os.environ.get('AISPM_ITEST_REDIS_DB', '7'))}"
# 10:00:00 UTC: a window starts here.
WINDOW_START = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


@pytest.fixture
def counters(settings):
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError:
        if os.environ.get("CI"):
            raise
        pytest.skip("needs Redis on 127.0.0.1:6379")
    client.flushdb()
    settings.AISPM_REDIS_URL = REDIS_URL
    yield client
    client.flushdb()


@pytest.fixture
def pair():
    return {"agent": AgentFactory(), "action_type": ActionTypeFactory()}


def count(pair, limit, now):
    return ratelimit.check_and_count(limit=limit, now=now, **pair)


def test_exactly_the_limit_passes_in_a_window_and_the_next_waits_for_its_end(counters, pair):
    now = WINDOW_START + timedelta(minutes=59, seconds=30)

    assert [count(pair, 3, now) for _ in range(3)] == [None, None, None]
    assert count(pair, 3, now) == 30
    assert count(pair, 3, now) == 30


def test_the_next_window_starts_from_zero(counters, pair):
    for _ in range(2):
        count(pair, 2, WINDOW_START)
    assert count(pair, 2, WINDOW_START + timedelta(minutes=30)) == 1800

    assert count(pair, 2, WINDOW_START + timedelta(hours=1)) is None


def test_every_counter_expires_after_its_window(counters, pair):
    count(pair, 5, WINDOW_START)
    count(pair, 5, WINDOW_START)

    [key] = counters.keys("aispm:rate:*")
    assert 0 < counters.ttl(key) <= ratelimit.WINDOW_SECONDS + 60
    assert int(counters.get(key)) == 2


def test_the_first_attempt_of_a_window_costs_one_round_trip(counters, pair, monkeypatch):
    count(pair, 5, WINDOW_START - timedelta(hours=1))  # loads the script into Redis
    client, _ = ratelimit._redis()
    commands = []
    real = client.connection_pool.get_connection

    def counting(*args, **kwargs):
        commands.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(client.connection_pool, "get_connection", counting)
    count(pair, 5, WINDOW_START)  # count 1: counted and given its expiry together

    assert len(commands) == 1
    [key] = counters.keys(f"aispm:rate:*:{int(WINDOW_START.timestamp()) // 3600}")
    assert counters.ttl(key) > 0


def test_a_script_redis_forgot_is_loaded_again(counters, pair):
    count(pair, 2, WINDOW_START)
    counters.script_flush()

    assert count(pair, 2, WINDOW_START) is None
    assert count(pair, 2, WINDOW_START) == 3600


def test_without_redis_the_window_is_counted_in_the_database(settings, pair):
    settings.AISPM_REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there

    assert count(pair, 1, WINDOW_START) is None  # nothing stored yet: the count is 0
