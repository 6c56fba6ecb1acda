"""Rate limits in Redis (fakeredis: the functions, not a broker)."""

import fakeredis
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared.ratelimit import Limit, RateLimiter


def test_parse():
    assert Limit.parse("600/60") == Limit(600, 60)
    assert Limit.parse("5") == Limit(5, 60)
    assert Limit.parse("0") is None and Limit.parse("off") is None
    for bad in ("many/60", "-1/60", "10/0"):
        with pytest.raises(ValueError):
            Limit.parse(bad)


def test_counts_per_key_and_window():
    limiter = RateLimiter(fakeredis.FakeRedis())
    limit = Limit(3, 60)
    now = 28_333_334 * 60 + 10.0  # 10 s into a 60 s window
    verdicts = [limiter.hit("token", "a", limit, now) for _ in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert verdicts[-1].retry_after == 50
    assert limiter.hit("token", "b", limit, now).allowed  # another key has its own count
    assert limiter.hit("token", "a", limit, now + 60).allowed  # the next window starts afresh


def test_windows_expire_in_redis():
    client = fakeredis.FakeRedis()
    RateLimiter(client).hit("sender", "x", Limit(10, 30), 1_700_000_000.0)
    [key] = client.keys("ratelimit:sender:x:*")
    assert 0 < client.ttl(key) <= 31


def test_fails_open_when_redis_is_down():
    dead = redis.Redis(port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    verdict = RateLimiter(dead).hit("token", "a", Limit(1, 60))
    assert verdict.allowed


def test_a_share_is_spent_locally_and_the_limit_holds_across_processes():
    client = fakeredis.FakeRedis()
    web1, web2 = RateLimiter(client), RateLimiter(client)  # two web processes, one Redis
    limit = Limit(500, 60)  # a share is 10 requests
    now = 28_333_334 * 60 + 1.0
    verdicts = [(web1 if i % 3 else web2).hit("sender", "s", limit, now) for i in range(600)]
    allowed = sum(v.allowed for v in verdicts)
    # Never more than the limit; at most a share per process left unused when refusals start.
    assert 500 - 2 * 10 <= allowed <= 500
    assert all(not v.allowed for v in verdicts[510:])
    [key] = client.keys("ratelimit:sender:s:*")
    # One round trip per share, and one per process to learn the window is full: not per request.
    assert int(client.get(key)) <= 500 + 2 * 10
