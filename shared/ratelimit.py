"""Rate limits kept in Redis: fixed windows, shared by every web process."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import redis

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limit:
    """`requests` per `seconds`; parsed from "600/60" (0 turns the limit off)."""

    requests: int
    seconds: int

    @classmethod
    def parse(cls, text: str) -> "Limit | None":
        text = text.strip()
        if text in {"", "0", "off"}:
            return None
        count, _, window = text.partition("/")
        try:
            limit = cls(int(count), int(window or 60))
        except ValueError:
            raise ValueError(f"a rate limit reads <requests>/<seconds>, like 600/60; got {text!r}") from None
        if limit.requests < 1 or limit.seconds < 1:
            raise ValueError(f"a rate limit needs positive numbers; got {text!r}")
        return limit


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int = 0  # seconds until the window that refused ends
    remaining: int = 0


class RateLimiter:
    """Counts requests per key and window in Redis; lets everything through if Redis fails.

    Failing open is deliberate: a rate limit protects us from abuse, but refusing a
    legitimate delivery because the limiter's store is down would lose more than it saves.
    """

    def __init__(self, client: redis.Redis, prefix: str = "ratelimit"):
        self.client = client
        self.prefix = prefix

    def hit(self, scope: str, key: str, limit: Limit, now: float | None = None) -> Verdict:
        now = time.time() if now is None else now
        window = int(now // limit.seconds)
        name = f"{self.prefix}:{scope}:{key}:{window}"
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.incr(name)
            pipe.expire(name, limit.seconds + 1)
            count, _ = pipe.execute()
        except redis.RedisError as exc:
            log.warning("rate limiter unavailable, request let through: %s", exc)
            return Verdict(True)
        if count > limit.requests:
            return Verdict(False, retry_after=max(1, math.ceil((window + 1) * limit.seconds - now)))
        return Verdict(True, remaining=limit.requests - count)
