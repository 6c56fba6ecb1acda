"""Rate limits kept in Redis: fixed windows, shared by every web process."""

from __future__ import annotations

import logging
import math
import threading
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


ALLOWED = Verdict(True)


class RateLimiter:
    """Counts requests per key and window in Redis; lets everything through if Redis fails.

    Each process takes its share of a window from Redis a few requests at a time (1/50 of
    the limit, at most 100) and spends it locally, so most requests cost no round trip.
    Nothing over the limit is ever let through; near it, up to that share per process may
    sit unused while another process is refused (2 % of the limit per web process).

    Failing open is deliberate: a rate limit protects us from abuse, but refusing a
    legitimate delivery because the limiter's store is down would lose more than it saves.
    """

    def __init__(self, client: redis.Redis, prefix: str = "ratelimit"):
        self.client = client
        self.prefix = prefix
        self._lock = threading.Lock()
        # (scope, key) -> (window, requests left here; -1: the window is full)
        self._held: dict[tuple[str, str], tuple[int, int]] = {}

    def hit(self, scope: str, key: str, limit: Limit, now: float | None = None) -> Verdict:
        now = time.time() if now is None else now
        window = int(now // limit.seconds)
        held = (scope, key)
        with self._lock:
            held_window, left = self._held.get(held, (window, 0))
            if held_window == window:
                if left > 0:
                    self._held[held] = (window, left - 1)
                    return ALLOWED
                if left < 0:
                    # Redis said the window is full: it stays full until it ends.
                    return self._refused(limit, window, now)
        share = min(100, max(1, limit.requests // 50))
        name = f"{self.prefix}:{scope}:{key}:{window}"
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.incrby(name, share)
            pipe.expire(name, limit.seconds + 1)
            count, _ = pipe.execute()
        except redis.RedisError as exc:
            log.warning("rate limiter unavailable, request let through: %s", exc)
            return ALLOWED
        granted = min(share, limit.requests - (count - share))
        with self._lock:
            self._held[held] = (window, granted - 1 if granted > 0 else -1)
        return ALLOWED if granted > 0 else self._refused(limit, window, now)

    @staticmethod
    def _refused(limit: Limit, window: int, now: float) -> Verdict:
        return Verdict(False, retry_after=max(1, math.ceil((window + 1) * limit.seconds - now)))
