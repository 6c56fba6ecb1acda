"""The app-facing API (CONTRACT §3) through Flask's test client on PostgreSQL."""

import json

import pytest

from helpers import bearer, wait_for


def create(client, token, job_type="cover_letter", params=None, **headers):
    body = {"job_type": job_type, "params": params or {}}
    return client.post("/api/jobs", json=body, headers={**bearer(token), **headers})


def test_create_job_is_pending_with_location(client, users):
    external_id, token = users("alice")
    response = create(client, token, params={"cv_url": "https://x/cv.pdf"})
    assert response.status_code == 202
    job = response.json
    assert (job["status"], job["progress"], job["user_id"], job["source"]) == ("pending", 0, external_id, "api")
    assert response.headers["Location"] == f"/api/jobs/{job['id']}"
    assert job["params"] == {"cv_url": "https://x/cv.pdf"}
    assert job["artifacts"] == {} and job["attempts"] == 0


@pytest.mark.parametrize(
    "body, field",
    [({"job_type": "Cover"}, "job_type"), ({"job_type": "x" * 65}, "job_type"), ({}, "job_type"),
     ({"job_type": "ok", "params": []}, "params"), ({"job_type": "ok", "extra": 1}, "extra")],
)
def test_create_job_validation(client, users, body, field):
    _, token = users("bob")
    response = client.post("/api/jobs", json=body, headers=bearer(token))
    assert response.status_code == 400
    assert response.json["error"] == "validation_error"
    assert field in response.json["details"]


def test_create_job_bad_json_and_media_type(client, users):
    _, token = users("carol")
    bad = client.post("/api/jobs", data=b'{"job_type": ', headers={**bearer(token), "Content-Type": "application/json"})
    assert (bad.status_code, bad.json["error"]) == (400, "invalid_json")
    text = client.post("/api/jobs", data=b"job_type=x", headers={**bearer(token), "Content-Type": "text/plain"})
    assert (text.status_code, text.json["error"]) == (415, "unsupported_media_type")
    array = client.post("/api/jobs", json=[1], headers=bearer(token))
    assert (array.status_code, array.json["error"]) == (400, "validation_error")


def test_auth_required(client):
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        response = client.get("/api/jobs", headers=headers)
        assert (response.status_code, response.json["error"]) == (401, "unauthorized")


def test_idempotency_key(client, users):
    _, token = users("dave")
    first = create(client, token, params={"n": 1}, **{"Idempotency-Key": "order-1"})
    again = create(client, token, params={"n": 1}, **{"Idempotency-Key": "order-1"})
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json["id"] == first.json["id"]
    other = create(client, token, params={"n": 2}, **{"Idempotency-Key": "order-1"})
    assert (other.status_code, other.json["error"]) == (409, "idempotency_conflict")
    # The key is per user: another user's same key is another job.
    _, token2 = users("erin")
    theirs = create(client, token2, params={"n": 1}, **{"Idempotency-Key": "order-1"})
    assert theirs.status_code == 202 and theirs.json["id"] != first.json["id"]


def test_a_replayed_key_answers_the_job_as_it_is_now(app, client, users):
    """The same Idempotency-Key answers the first job as GET shows it, artifacts included."""
    from sqlalchemy import select

    from helpers import hmac_headers
    from helpers.env import WEBHOOK_SECRET
    from shared import deliveries
    from shared.models import Delivery

    _, token = users("replay")
    first = create(client, token, job_type="image_generation", **{"Idempotency-Key": "replay-1"}).json
    raw = json.dumps({"job_id": first["id"], "status": "completed",
                      "data": {"images": [{"url": "https://img.example/1.png", "dimensions": "2x1"}]}}).encode()
    hook = client.post("/api/webhooks/image-completion", data=raw, headers=hmac_headers(WEBHOOK_SECRET, raw))
    with app.extensions["sessionmaker"].begin() as db:  # the worker's step
        pk = db.scalar(select(Delivery.id).where(Delivery.delivery_id == hook.json["delivery_id"]))
        deliveries.apply(db, [pk], max_attempts=5)
    again = create(client, token, job_type="image_generation", **{"Idempotency-Key": "replay-1"})
    shown = client.get(f"/api/jobs/{first['id']}", headers=bearer(token)).json
    assert (again.status_code, again.json["id"], again.json["status"]) == (200, first["id"], "succeeded")
    assert again.json["artifacts"] == shown["artifacts"] and shown["artifacts"]["images"][0]["width"] == 2


def test_visibility_other_user_404_admin_sees(client, users):
    _, owner = users("frank")
    _, stranger = users("grace")
    _, admin = users("root", admin=True)
    job = create(client, owner).json
    assert client.get(f"/api/jobs/{job['id']}", headers=bearer(stranger)).status_code == 404
    assert client.post(f"/api/jobs/{job['id']}/cancel", headers=bearer(stranger)).status_code == 404
    assert job["id"] not in [j["id"] for j in client.get("/api/jobs", headers=bearer(stranger)).json["items"]]
    seen = client.get(f"/api/jobs/{job['id']}", headers=bearer(admin))
    assert seen.status_code == 200 and seen.json["id"] == job["id"]


def test_cursor_pagination_newest_first(client, users):
    _, token = users("heidi")
    ids = [create(client, token, job_type="page.test").json["id"] for _ in range(5)]
    seen, cursor = [], None
    while True:
        query = "?limit=2&job_type=page.test" + (f"&cursor={cursor}" if cursor else "")
        page = client.get("/api/jobs" + query, headers=bearer(token)).json
        assert len(page["items"]) <= 2
        seen += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))


FORGED_CURSORS = [  # base64 of JSON we never issue: a NUL in the key, a naive time, a list key
    "WyIyMDI2LTAxLTAxVDAwOjAwOjAwKzAwOjAwIiwgImFcdTAwMDBiIl0",
    "WyIyMDI2LTAxLTAxVDAwOjAwOjAwIiwgIngiXQ",
    "WyIyMDI2LTAxLTAxVDAwOjAwOjAwKzAwOjAwIiwgWzFdXQ",
]


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=101", "limit=x", "status=weird", "cursor=%%%", "cursor=bm9wZQ", "foo=1", "limit=1&limit=2",
     *(f"cursor={c}" for c in FORGED_CURSORS)],
)
def test_list_query_validation(client, users, query):
    _, token = users("ivan")
    response = client.get(f"/api/jobs?{query}", headers=bearer(token))
    assert (response.status_code, response.json["error"]) == (400, "validation_error")


def test_status_filter(client, users):
    _, token = users("judy")
    job = create(client, token).json
    client.post(f"/api/jobs/{job['id']}/cancel", headers=bearer(token))
    cancelled = client.get("/api/jobs?status=cancelled", headers=bearer(token)).json["items"]
    pending = client.get("/api/jobs?status=pending", headers=bearer(token)).json["items"]
    assert [j["id"] for j in cancelled] == [job["id"]] and pending == []


def test_cancel_and_retry_rules(client, users):
    _, token = users("mallory")
    job = create(client, token).json
    retry_pending = client.post(f"/api/jobs/{job['id']}/retry", headers=bearer(token))
    assert (retry_pending.status_code, retry_pending.json["error"]) == (409, "not_retryable")
    cancelled = client.post(f"/api/jobs/{job['id']}/cancel", headers=bearer(token))
    assert (cancelled.status_code, cancelled.json["status"]) == (202, "cancelled")
    again = client.post(f"/api/jobs/{job['id']}/cancel", headers=bearer(token))
    assert (again.status_code, again.json["error"]) == (409, "not_cancellable")
    retried = client.post(f"/api/jobs/{job['id']}/retry", headers=bearer(token))
    assert (retried.status_code, retried.json["status"], retried.json["completed_at"]) == (202, "pending", None)


def test_etag_answers_304_until_something_changes(client, users):
    _, token = users("niaj")
    _, admin = users("boss", admin=True)
    job = create(client, token).json
    client.post(f"/api/jobs/{job['id']}/cancel", headers=bearer(token))  # no worker touches it now
    first = client.get(f"/api/jobs/{job['id']}", headers=bearer(token))
    tag = first.headers["ETag"]
    assert first.json["events"] == []
    cached = client.get(f"/api/jobs/{job['id']}", headers={**bearer(token), "If-None-Match": tag})
    assert cached.status_code == 304 and cached.data == b""
    owner = first.json["user_id"]
    client.patch(f"/api/jobs/{job['id']}", json={"user_id": owner + "-2"}, headers=bearer(admin))
    changed = client.get(f"/api/jobs/{job['id']}", headers={**bearer(admin), "If-None-Match": tag})
    assert changed.status_code == 200 and changed.headers["ETag"] != tag


def test_patch_assign_admin_only(client, users):
    _, owner = users("olivia")
    _, admin = users("boss", admin=True)
    job = create(client, owner).json
    refused = client.patch(f"/api/jobs/{job['id']}", json={"user_id": "x"}, headers=bearer(owner))
    assert (refused.status_code, refused.json["error"]) == (403, "forbidden")
    new_owner, new_token = users("peggy")
    assigned = client.patch(f"/api/jobs/{job['id']}", json={"user_id": new_owner}, headers=bearer(admin))
    assert (assigned.status_code, assigned.json["user_id"]) == (200, new_owner)
    assert client.get(f"/api/jobs/{job['id']}", headers=bearer(new_token)).status_code == 200
    unknown = client.patch(f"/api/jobs/{job['id']}", json={"user_id": 4242}, headers=bearer(admin))
    assert unknown.json["user_id"] == "4242"  # created on the fly
    bad = client.patch(f"/api/jobs/{job['id']}", json={"user_id": ["x"]}, headers=bearer(admin))
    assert (bad.status_code, bad.json["error"]) == (400, "validation_error")
    assert client.patch("/api/jobs/nope", json={"user_id": "x"}, headers=bearer(admin)).status_code == 404


def test_notifications_auth_and_unknown(client, users):
    _, token = users("quinn")
    assert client.get("/api/notifications").status_code == 401
    page = client.get("/api/notifications?unread=true", headers=bearer(token)).json
    assert page == {"items": [], "next_cursor": None}
    for bad in ("nope", "99999999999999999999999", "123"):
        response = client.post(f"/api/notifications/{bad}/read", headers=bearer(token))
        assert (response.status_code, response.json["error"]) == (404, "not_found")


def test_ops_endpoints(client, stack):
    assert client.get("/healthz").status_code == 200
    # /readyz reads beat's tick and the worker canary: the stack runs beat and a worker.
    ready = wait_for(lambda: (r := client.get("/readyz")).status_code == 200 and r.json, timeout=60,
                     message="/readyz 200 once beat ticked and a worker ran the canary")
    assert ready["checks"] == {"database": "ok", "broker": "ok", "beat": "ok", "worker": "ok"}
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    lines = metrics.data.decode().splitlines()
    # The families a dashboard reads (their counts: tests/ingress/test_ops.py).
    assert [line for line in lines if line.startswith("# TYPE")] == [
        "# TYPE bridge_jobs gauge", "# TYPE bridge_deliveries_received gauge",
        "# TYPE bridge_deliveries_duplicates gauge", "# TYPE bridge_deliveries_unapplied gauge",
        "# TYPE bridge_deliveries_by_status gauge", "# TYPE bridge_delivery_apply_seconds histogram",
        "# TYPE bridge_image_size_bytes histogram", "# TYPE bridge_beat_canary_age_seconds gauge",
    ]
    # /readyz found that the canary ran: its age is shown.
    (canary,) = [line for line in lines if line.startswith("bridge_beat_canary_age_seconds ")]
    assert float(canary.split()[1]) >= 0
    assert metrics.headers.get_all("Content-Type") == ["text/plain; version=0.0.4; charset=utf-8"]
    spec = client.get("/openapi.json").json
    assert spec["openapi"].startswith("3.")
    for path in ("/api/jobs", "/api/jobs/{job_id}", "/api/jobs/{job_id}/retry", "/api/jobs/{job_id}/cancel",
                 "/api/notifications", "/api/notifications/{notification_id}/read", "/api/n8n/hooks/job-status",
                 "/healthz", "/readyz", "/metrics"):
        assert path in spec["paths"], path
    assert "Job" in spec["components"]["schemas"]


def test_nul_in_url_or_header_is_400(client, users):
    _, token = users("nul")
    for path, headers in (("/api/jobs/a%00b", {}), ("/api/notifications?job_id=a%00", {}),
                          ("/api/jobs", {"Idempotency-Key": "a\x00b"})):
        response = client.get(path, headers={**bearer(token), **headers})
        assert (response.status_code, response.json["error"]) == (400, "validation_error"), path


def test_unknown_route_and_method_use_error_shape(client):
    missing = client.get("/api/nothing-here")
    assert (missing.status_code, missing.json["error"]) == (404, "not_found")
    wrong = client.delete("/api/jobs")
    assert (wrong.status_code, wrong.json["error"]) == (405, "method_not_allowed")
