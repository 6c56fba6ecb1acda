"""ingress/auth.py: a web process remembers a token's user for TOKEN_CACHE_SECONDS, on a clock
the tests move."""

import pytest
from sqlalchemy import event

from helpers import Clock, bearer
from ingress.auth import TokenCache


@pytest.fixture
def clock(app):
    """The app's token cache on a clock that moves only when the test says."""
    clock = Clock()
    app.extensions["token_cache"] = TokenCache(clock=clock)
    yield clock
    app.extensions["token_cache"] = TokenCache()


def test_a_polling_frontend_costs_one_token_lookup_per_cache_period(app, client, users, clock):
    _, token = users("poller")
    job = client.post("/api/jobs", json={"job_type": "poll"}, headers=bearer(token)).json  # looked up once
    lookups = []

    def count(_conn, _cursor, statement, *_):
        if "api_tokens" in statement:
            lookups.append(statement)

    event.listen(app.extensions["engine"], "before_cursor_execute", count)
    try:
        answers = [client.get(f"/api/jobs/{job['id']}", headers=bearer(token)).status_code for _ in range(20)]
        clock.advance(app.extensions["token_cache"].seconds)
        answers += [client.get(f"/api/jobs/{job['id']}", headers=bearer(token)).status_code for _ in range(20)]
    finally:
        event.remove(app.extensions["engine"], "before_cursor_execute", count)
    assert answers == [200] * 40
    assert len(lookups) == 1, "one lookup per cache period"


def test_a_revoked_token_is_refused_once_the_cache_period_is_over(app, client, users, clock):
    from shared.accounts import hash_token
    from shared.models import ApiToken, utcnow

    _, token = users("revoked")
    assert client.get("/api/notifications", headers=bearer(token)).status_code == 200
    with app.extensions["sessionmaker"].begin() as db:
        db.query(ApiToken).filter_by(token_hash=hash_token(token)).update({"revoked_at": utcnow()})
    clock.advance(app.extensions["token_cache"].seconds - 0.001)
    assert client.get("/api/notifications", headers=bearer(token)).status_code == 200, "remembered for its period"
    clock.advance(0.001)
    refused = client.get("/api/notifications", headers=bearer(token))
    assert refused.status_code == 401 and refused.json["error"] == "unauthorized"
