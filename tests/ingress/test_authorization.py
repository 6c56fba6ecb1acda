"""Authorization matrix: every app-facing endpoint × {no token, bad token, another user, admin}."""

import pytest

from helpers import bearer

NO_TOKEN, BAD_TOKEN, OTHER, ADMIN, OWNER = "no token", "bad token", "another user", "admin", "owner"


@pytest.fixture
def world(client, users, app):
    """An owner with a failed job and a notification; another user; an admin."""
    from sqlalchemy import select

    from shared import jobs, lifecycle
    from shared.models import Job, Notification

    _, owner = users("owner")
    _, other = users("other")
    _, admin = users("admin", admin=True)
    job = client.post("/api/jobs", json={"job_type": "matrix"}, headers=bearer(owner)).json
    with app.extensions["sessionmaker"].begin() as db:
        # Failed by its sender: whatever a running worker did with the job meanwhile.
        row = db.scalar(select(Job).where(Job.id == job["id"]).with_for_update(of=Job))
        jobs.change_job(db, row, lifecycle.Reported("failed", error="boom"))
        db.flush()
        note = db.query(Notification).filter_by(job_id=job["id"]).one()
    headers = {NO_TOKEN: {}, BAD_TOKEN: bearer("abt_not-a-token"), OTHER: bearer(other), ADMIN: bearer(admin),
               OWNER: bearer(owner)}
    return {"job": job["id"], "note": str(note.id), "headers": headers}


# method, path, body, expected status for (another user, admin, owner)
MATRIX = [
    ("POST", "/api/jobs", {"job_type": "matrix"}, (202, 202, 202)),
    ("GET", "/api/jobs", None, (200, 200, 200)),
    ("GET", "/api/jobs/{job}", None, (404, 200, 200)),
    ("PATCH", "/api/jobs/{job}", {"user_id": "someone"}, (403, 200, 403)),
    ("POST", "/api/jobs/{job}/cancel", None, (404, 409, 409)),
    ("GET", "/api/notifications", None, (200, 200, 200)),
    ("POST", "/api/notifications/{note}/read", None, (404, 200, 200)),
    ("POST", "/api/jobs/{job}/retry", None, (404, 202, 409)),  # admin retries first: owner then finds it pending
    ("POST", "/api/actions", {"actionType": "GENERER_DEVIS", "entiteType": "candidat", "entiteId": "X1"},
     (202, 202, 202)),
]


@pytest.mark.parametrize("method, path, payload, expected", MATRIX, ids=[f"{m} {p}" for m, p, _, _ in MATRIX])
def test_matrix(client, world, reliability, method, path, payload, expected):
    reliability.hostile_input("authorization matrix requests", 5)
    url = path.format(job=world["job"], note=world["note"])
    for who in (NO_TOKEN, BAD_TOKEN):
        response = client.open(url, method=method, json=payload, headers=world["headers"][who])
        assert (response.status_code, response.json["error"]) == (401, "unauthorized"), who
    for who, status in zip((OTHER, ADMIN, OWNER), expected):
        response = client.open(url, method=method, json=payload, headers=world["headers"][who])
        assert response.status_code == status, (who, response.json)


def test_lists_show_only_what_each_may_see(client, world):
    headers = world["headers"]
    for who, sees in ((OTHER, False), (ADMIN, True), (OWNER, True)):
        jobs = client.get("/api/jobs?limit=100", headers=headers[who]).json["items"]
        notes = client.get(f"/api/notifications?job_id={world['job']}", headers=headers[who]).json["items"]
        assert (world["job"] in [j["id"] for j in jobs]) is sees, who
        assert bool(notes) is sees, who


@pytest.mark.parametrize("path", ["/api/n8n/hooks/job-status", "/api/webhooks/image-completion", "/api/webhooks/book-completion"])
def test_webhooks_ignore_bearer_tokens(client, world, path):
    response = client.post(path, json={"job_id": world["job"], "status": "succeeded"}, headers=world["headers"][ADMIN])
    assert (response.status_code, response.json["error"]) == (401, "missing_signature")


def test_a_polling_frontend_costs_one_token_lookup_per_cache_period(app, client, users):
    from sqlalchemy import event

    _, token = users("poller")
    job = client.post("/api/jobs", json={"job_type": "poll"}, headers=bearer(token)).json
    lookups = []

    def count(_conn, _cursor, statement, *_):
        if "api_tokens" in statement:
            lookups.append(statement)

    event.listen(app.extensions["engine"], "before_cursor_execute", count)
    try:
        answers = [client.get(f"/api/jobs/{job['id']}", headers=bearer(token)).status_code for _ in range(20)]
    finally:
        event.remove(app.extensions["engine"], "before_cursor_execute", count)
    assert answers == [200] * 20
    assert len(lookups) <= 1


def test_a_revoked_token_is_refused_once_the_cache_period_is_over(app, client, users):
    import time

    from shared.accounts import hash_token
    from shared.models import ApiToken, utcnow
    from ingress.auth import TokenCache

    _, token = users("revoked")
    app.extensions["token_cache"] = cache = TokenCache(seconds=0.3)
    try:
        assert client.get("/api/notifications", headers=bearer(token)).status_code == 200
        with app.extensions["sessionmaker"].begin() as db:
            db.query(ApiToken).filter_by(token_hash=hash_token(token)).update({"revoked_at": utcnow()})
        time.sleep(cache.seconds)
        refused = client.get("/api/notifications", headers=bearer(token))
        assert refused.status_code == 401 and refused.json["error"] == "unauthorized"
    finally:
        app.extensions["token_cache"] = TokenCache()
