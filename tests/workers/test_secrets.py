"""Secrets stay secret: never in the logs of a full run, tokens stored hashed."""

import json
import uuid

import pytest
import requests
from sqlalchemy import text

from helpers import bearer, hmac_headers, wait_for
from helpers.env import N8N_API_KEY, N8N_OLD_SECRET, N8N_SECRET, WEBHOOK_SECRET
from helpers.processes import private_stack


@pytest.fixture(scope="module")
def logged_run(app, n8n, tmp_path_factory):
    """A full run on its own processes: jobs, dispatches, callbacks, refusals; then its logs."""
    from shared.accounts import create_token

    with app.extensions["sessionmaker"].begin() as db:
        token = create_token(db, f"secretive-{uuid.uuid4().hex[:6]}")
    wrong = "wrong-secret-" + uuid.uuid4().hex
    with private_stack(tmp_path_factory.mktemp("secrets"), n8n) as stack:
        n8n.callback_base = stack.base_url
        job = requests.post(f"{stack.base_url}/api/jobs", json={"job_type": "letter", "params": {"callback": True}},
                            headers=bearer(token), timeout=10).json()
        wait_for(lambda: requests.get(f"{stack.base_url}/api/jobs/{job['id']}", headers=bearer(token),
                                      timeout=10).json()["status"] == "succeeded", message="job done")
        image = json.dumps({"job_id": f"img-{uuid.uuid4()}", "status": "generating"}).encode()
        for secret in (WEBHOOK_SECRET, wrong):
            requests.post(f"{stack.base_url}/api/webhooks/image-completion", data=image, timeout=10,
                          headers={"Content-Type": "application/json", "X-Webhook-Secret": secret})
        body = json.dumps({"job_id": job["id"], "status": "running"}).encode()
        requests.post(f"{stack.base_url}/api/n8n/hooks/job-status", data=body, timeout=10,
                      headers=hmac_headers(wrong, body))
        requests.get(f"{stack.base_url}/api/jobs", headers=bearer(wrong), timeout=10)
        stack.kill("worker")  # tracebacks and restarts belong in the logs too
        stack.start_worker()
    logs = b"".join(stack.log(name) for name in ("web", "worker", "beat"))
    return logs, token, wrong


def test_no_secret_in_any_log(logged_run):
    logs, token, wrong = logged_run
    assert b"POST /api/n8n/hooks/job-status" in logs and b"workers.dispatch.send" in logs  # the logs are real
    for secret in (N8N_SECRET, N8N_OLD_SECRET, WEBHOOK_SECRET, N8N_API_KEY, token, wrong):
        assert secret.encode() not in logs, f"a secret ({secret[:6]}…) is in the logs"


def test_tokens_stored_hashed_and_secret_headers_not_kept(logged_run, engine):
    _, token, _ = logged_run
    with engine.connect() as db:
        hashes = db.execute(text("SELECT token_hash, prefix FROM api_tokens")).all()
        headers = db.execute(text("SELECT headers FROM deliveries")).scalars().all()
    assert hashes and all(token not in row.token_hash and len(row.token_hash) == 64 for row in hashes)
    assert all("x-webhook-secret" not in json.dumps(h).lower() and "x-signature" not in json.dumps(h).lower()
               for h in headers)
