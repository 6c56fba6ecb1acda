"""The Flask CLI: create-token and doctor, run as an operator runs them."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import requests

from helpers import bearer, wait_for
from helpers.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
FLASK = str(Path(sys.executable).parent / "flask")


def flask(*args, env=None):
    return subprocess.run(
        [FLASK, "--app", "ingress", *args], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_create_token_prints_only_the_token(client, database_url):
    user = f"cli-{uuid.uuid4().hex[:6]}"
    result = flask("create-token", "--user", user, "--email", "u@example.com")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("abt_")
    job = client.post("/api/jobs", json={"job_type": "x"}, headers=bearer(lines[0])).json
    assert job["user_id"] == user
    second = flask("create-token", "--user", user, "--admin").stdout.strip()
    assert second != lines[0]
    assert client.get(f"/api/jobs/{job['id']}", headers=bearer(second)).status_code == 200


def test_doctor_all_good(n8n, stack):
    wait_for(lambda: requests.get(stack.base_url + "/readyz", timeout=5).status_code == 200, timeout=60,
             message="beat and the worker running")
    result = flask("doctor", env={"N8N_JOB_WEBHOOK": n8n.url("/webhook/ai-job"), "N8N_BASE_URL": n8n.url(""),
                                  "PUBLIC_BASE_URL": stack.base_url})
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"POST {stack.base_url}/api/n8n/hooks/job-status" in result.stdout
    assert "N8N_WEBHOOK_SECRET" in result.stdout and "signs and verifies" in result.stdout
    for check in ("beat            ok", "worker          ok", "callback URL    answers", "CRM routes      all resolve"):
        assert check in result.stdout, result.stdout
    assert "All good." in result.stdout
    # Secrets are masked: their values never appear.
    assert os.environ["N8N_WEBHOOK_SECRET"].split(",")[0] not in result.stdout


def test_doctor_names_what_is_broken(database_url):
    result = flask("doctor", env={"N8N_WEBHOOK_SECRET": "", "N8N_JOB_WEBHOOK": "", "N8N_BASE_URL": ""})
    assert result.returncode == 1
    assert "N8N_WEBHOOK_SECRET is not set" in result.stdout
    assert "no n8n dispatch URL" in result.stdout


def test_doctor_says_what_to_set_for_a_callback_url_or_a_route_that_cannot_work(n8n, database_url):
    nowhere = f"http://127.0.0.1:{free_port()}"
    result = flask("doctor", env={"N8N_JOB_WEBHOOK": n8n.url("/webhook/ai-job"), "N8N_BASE_URL": "",
                                  "PUBLIC_BASE_URL": nowhere})
    assert result.returncode == 1
    assert f"FAILED: GET {nowhere}/healthz: ConnectionError" in result.stdout
    assert "the callback URL does not reach this service" in result.stdout and "set PUBLIC_BASE_URL" in result.stdout
    # Route names resolve against N8N_BASE_URL only: N8N_JOB_WEBHOOK does not help them.
    assert "CRM routes      FAILED: 7 need N8N_BASE_URL" in result.stdout, result.stdout
    assert "marjorie-candidat-relance" in result.stdout and "set it" in result.stdout
