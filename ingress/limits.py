"""Abuse limits for the ingress: 429 with Retry-After, counted in Redis."""

from __future__ import annotations

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from flask import current_app

from ingress.errors import ApiError
from shared.ratelimit import Limit, RateLimiter


def rate_limiter(redis_url: str | None) -> RateLimiter | None:
    """The limiter on `redis_url`; None (no limits) without Redis."""
    if not redis_url:
        return None
    # No retries: redis-py's default retries a refused connection for seconds, on every request.
    return RateLimiter(redis.Redis.from_url(
        redis_url, socket_timeout=0.25, socket_connect_timeout=0.25, retry=Retry(NoBackoff(), 0)
    ))


def enforce(scope: str, key: str, limit: Limit | None) -> None:
    """Count one request against `limit` for (scope, key); 429 rate_limited past it."""
    limiter = current_app.extensions["ratelimiter"]
    if limit is None or limiter is None:
        return
    verdict = limiter.hit(scope, key, limit)
    if not verdict.allowed:
        raise ApiError(
            429, "rate_limited",
            f"more than {limit.requests} requests in {limit.seconds} s; retry in {verdict.retry_after} s",
            headers={"Retry-After": str(verdict.retry_after)},
        )
