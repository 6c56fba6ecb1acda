"""The whole pipeline on real processes: gunicorn, a Celery worker and beat, PostgreSQL,
Redis, and a local HTTP server in n8n's place."""

import requests

from helpers import bearer, wait_for


def api(stack, method, path, token, **kwargs):
    return requests.request(method, stack.base_url + path, headers=bearer(token), timeout=10, **kwargs)


def create_job(stack, token, params, job_type="cover_letter"):
    response = api(stack, "POST", "/api/jobs", token, json={"job_type": job_type, "params": params})
    assert response.status_code == 202, response.text
    return response.json()


def job_when(stack, token, job_id, predicate, timeout=30, what="job state"):
    def check():
        job = api(stack, "GET", f"/api/jobs/{job_id}", token).json()
        return job if predicate(job) else None

    return wait_for(check, timeout=timeout, message=what)


def test_create_dispatch_callback_succeeded(stack, n8n, users):
    owner, token = users("alice")
    _, stranger = users("bob")
    _, admin = users("admin", admin=True)
    job = create_job(stack, token, {"callback": True, "cv_url": "https://cv"})

    done = job_when(stack, token, job["id"], lambda j: j["status"] == "succeeded" and len(j["events"]) == 3,
                    what="succeeded with its three events")
    assert done["progress"] == 100 and done["result"] == {"text": "done"} and done["phase"] == "succeeded"
    assert done["completed_at"] and done["attempts"] == 1

    [dispatch] = n8n.for_job(job["id"])
    assert dispatch.signature_ok and dispatch.api_key_ok
    assert dispatch.headers["idempotency-key"] == job["id"]
    assert dispatch.payload == {
        "job_id": job["id"], "user_id": owner, "job_type": "cover_letter",
        "params": {"callback": True, "cv_url": "https://cv"},
        "callback_url": f"{stack.base_url}/api/n8n/hooks/job-status", "attempt": 1,
    }
    assert n8n.callback_errors == []

    events = [(e["kind"], e["status"], e["progress"]) for e in done["events"]]
    assert events == [("dispatch", "dispatched", None), ("callback", "running", 40), ("callback", "succeeded", 100)]

    notes = api(stack, "GET", f"/api/notifications?job_id={job['id']}", token).json()["items"]
    assert [(n["type"], n["job_id"]) for n in notes] == [("job_succeeded", job["id"])]
    assert api(stack, "GET", f"/api/jobs/{job['id']}", stranger).status_code == 404
    assert api(stack, "GET", f"/api/notifications?job_id={job['id']}", stranger).json()["items"] == []
    assert api(stack, "GET", f"/api/jobs/{job['id']}", admin).json()["status"] == "succeeded"


def test_dispatch_retries_transient_failures(stack, n8n, users):
    _, token = users("carol")
    job = create_job(stack, token, {"respond": [503, 502, 200]})
    done = job_when(stack, token, job["id"], lambda j: j["status"] == "dispatched", what="dispatched")
    assert done["attempts"] == 3
    dispatches = [e for e in done["events"] if e["kind"] == "dispatch"]
    assert [e["status"] for e in dispatches] == ["retrying", "retrying", "dispatched"]
    assert [e["data"]["http_status"] for e in dispatches] == [503, 502, 200]
    sent = n8n.for_job(job["id"])
    assert [r.payload["attempt"] for r in sent] == [1, 2, 3]
    assert {r.headers["idempotency-key"] for r in sent} == {job["id"]}


def test_dispatch_permanent_failure_fails_at_once(stack, n8n, users):
    _, token = users("dave")
    job = create_job(stack, token, {"respond": [404]})
    failed = job_when(stack, token, job["id"], lambda j: j["status"] == "failed", what="failed")
    assert failed["attempts"] == 1 and "404" in failed["error"]
    assert len(n8n.for_job(job["id"])) == 1
    notes = api(stack, "GET", f"/api/notifications?job_id={job['id']}", token).json()["items"]
    assert [n["type"] for n in notes] == ["job_failed"]


def test_retry_waiting_in_database_survives_broker_flush(stack, n8n, users, redis_client):
    _, token = users("erin")
    job = create_job(stack, token, {"respond": [503, 200], "retry_after": 4})
    job_when(stack, token, job["id"], lambda j: j["attempts"] == 1 and j["status"] == "pending", what="first attempt")
    redis_client.flushdb()  # every queued message is gone; the retry lives in the jobs table
    done = job_when(stack, token, job["id"], lambda j: j["status"] == "dispatched", what="dispatched after flush")
    assert done["attempts"] == 2
    gaps = [r for r in n8n.for_job(job["id"])]
    assert len(gaps) == 2


def test_exhausted_schedule_fails_then_manual_retry_succeeds(stack, n8n, users, reliability):
    _, token = users("frank")
    job = create_job(stack, token, {"respond": [503, 503, 503, 503, 200], "callback": True})
    failed = job_when(stack, token, job["id"], lambda j: j["status"] == "failed", what="gave up")
    assert failed["attempts"] == 4 and "gave up after 4 attempts" in failed["error"]
    retried = api(stack, "POST", f"/api/jobs/{job['id']}/retry", token)
    assert (retried.status_code, retried.json()["status"], retried.json()["attempts"]) == (202, "pending", 0)
    done = job_when(stack, token, job["id"], lambda j: j["status"] == "succeeded", what="succeeded after retry")
    assert done["attempts"] == 1 and done["error"] is None
    notes = api(stack, "GET", f"/api/notifications?job_id={job['id']}", token).json()["items"]
    succeeded = sum(n["type"] == "job_succeeded" for n in notes)
    reliability.fault("n8n down for the whole retry schedule (then a manual retry)", accepted=1,
                      applied_once=min(succeeded, 1), events=succeeded)
    assert [n["type"] for n in notes] == ["job_succeeded", "job_failed"]  # newest first


def test_cancelled_job_is_not_dispatched_and_callbacks_are_events_only(stack, n8n, users):
    _, token = users("grace")
    job = create_job(stack, token, {"respond": [503, 200]})
    job_when(stack, token, job["id"], lambda j: j["attempts"] >= 1, what="first attempt")
    assert api(stack, "POST", f"/api/jobs/{job['id']}/cancel", token).status_code == 202
    n8n.post_callback(f"{stack.base_url}/api/n8n/hooks/job-status", {"job_id": job["id"], "status": "succeeded"})
    final = job_when(
        stack, token, job["id"], lambda j: any(e["kind"] == "callback" for e in j["events"]), what="callback event"
    )
    assert final["status"] == "cancelled"
    assert len(n8n.for_job(job["id"])) == 1
