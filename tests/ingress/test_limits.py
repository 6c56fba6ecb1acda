"""ingress/limits.py: past a limit, a request is answered 429 rate_limited with Retry-After;
without a limit (or without Redis) nothing is counted."""

from __future__ import annotations

import fakeredis
import pytest
from flask import Flask

from ingress.errors import ApiError, error_response
from ingress.limits import enforce, rate_limiter
from shared.ratelimit import Limit, RateLimiter


@pytest.fixture
def redis_client():
    return fakeredis.FakeRedis()


@pytest.fixture
def app(redis_client):
    app = Flask(__name__)
    app.extensions["ratelimiter"] = RateLimiter(redis_client)
    return app


def test_past_the_limit_the_answer_is_429_rate_limited_with_retry_after(app, monkeypatch):
    # 10 s into a 60 s window, for every hit: the window's end is 50 s away.
    monkeypatch.setattr("shared.ratelimit.time.time", lambda: 28_333_334 * 60 + 10.0)
    limit = Limit(2, 60)
    with app.app_context():
        enforce("token", "alice", limit)
        enforce("token", "alice", limit)
        with pytest.raises(ApiError) as refused:
            enforce("token", "alice", limit)
        enforce("token", "bob", limit)  # another key keeps its own count
        response = error_response(refused.value)
    assert (response.status_code, response.json["error"]) == (429, "rate_limited")
    assert response.headers["Retry-After"] == "50"
    assert response.json["message"] == "more than 2 requests in 60 s; retry in 50 s"


def test_without_a_limit_nothing_is_counted(app, redis_client):
    with app.app_context():
        for _ in range(3):
            enforce("token", "alice", None)
    assert redis_client.keys("*") == []


def test_without_redis_there_is_no_limiter_and_nothing_is_refused():
    assert rate_limiter(None) is None
    app = Flask(__name__)
    app.extensions["ratelimiter"] = None
    with app.app_context():
        for _ in range(3):
            enforce("token", "alice", Limit(1, 60))
