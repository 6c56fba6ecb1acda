"""Abuse limits for the ingress: 429 with Retry-After, counted in Redis."""

from __future__ import annotations

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from flask import current_app

from ingress.errors import ApiError
from shared.ratelimit import Limit, RateLimiter


def _limiter() -> RateLimiter | None:
    extensions = current_app.extensions
    if "ratelimiter" not in extensions:
        url = extensions["settings"].redis_url
        # No retries: redis-py's default retries a refused connection for seconds, on every request.
        client = redis.Redis.from_url(
            url, socket_timeout=0.25, socket_connect_timeout=0.25, retry=Retry(NoBackoff(), 0)
        ) if url else None
        extensions["ratelimiter"] = RateLimiter(client) if client else None
    return extensions["ratelimiter"]


def enforce(scope: str, key: str, limit: Limit | None) -> None:
    """Count one request against `limit` for (scope, key); 429 rate_limited past it."""
    limiter = _limiter()
    if limit is None or limiter is None:
        return
    verdict = limiter.hit(scope, key, limit)
    if not verdict.allowed:
        raise ApiError(
            429, "rate_limited",
            f"more than {limit.requests} requests in {limit.seconds} s; retry in {verdict.retry_after} s",
            headers={"Retry-After": str(verdict.retry_after)},
        )
