"""README's two commands, from a copy of the tree: `make run` on the embedded default
(SQLite and Celery's SQLAlchemy transport under var/) processes a job end to end."""

import os
import re
import subprocess
import sys
from pathlib import Path

import requests

from helpers import bearer, wait_for
from helpers.env import N8N_API_KEY, N8N_SECRET
from helpers.processes import Stack

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(sys.executable).parent.parent


def readme_commands() -> list[str]:
    """The commands in the code blocks before README's first section, comments removed."""
    head = (ROOT / "README.md").read_text().split("\n## ", 1)[0]
    blocks = re.findall(r"```[a-z]*\n(.*?)```", head, flags=re.S)
    return [line.split("#")[0].strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_readme_opens_with_the_run_and_test_commands():
    assert readme_commands() == ["make run", "make test"]
    ci = (ROOT / ".ci/run").read_text()
    assert re.search(r"^\s*make test\b", ci, flags=re.M), ".ci/run must run README's test command"


def test_make_run_on_the_embedded_default(fresh_copy, n8n, tmp_path_factory):
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "VAR_DIR", "PUBLIC_BASE_URL"}}
    env.update(N8N_JOB_WEBHOOK=n8n.url("/webhook/ai-job"), N8N_WEBHOOK_SECRET=N8N_SECRET, N8N_API_KEY=N8N_API_KEY,
               SWEEP_INTERVAL="1")
    run = Stack(env, tmp_path_factory.mktemp("make-run"), root=fresh_copy, inherit=False)
    base = run.base_url
    try:
        run.spawn("make", f"make run VENV={VENV} PORT={run.port}")

        def ready():
            try:
                return requests.get(base + "/readyz", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_for(ready, timeout=90, message="make run to answer /readyz")
        token = subprocess.run(
            [str(VENV / "bin/flask"), "--app", "ingress", "create-token", "--user", "demo"],
            cwd=fresh_copy, env=env, capture_output=True, text=True, check=True,
        ).stdout.strip()
        job = requests.post(base + "/api/jobs", json={"job_type": "demo", "params": {"callback": True}},
                            headers=bearer(token), timeout=10).json()

        def succeeded():
            current = requests.get(f"{base}/api/jobs/{job['id']}", headers=bearer(token), timeout=10).json()
            return current if current["status"] == "succeeded" and len(current["events"]) == 3 else None

        done = wait_for(succeeded, timeout=90, message="the job to succeed on the embedded default")
        assert [e["status"] for e in done["events"]] == ["dispatched", "running", "succeeded"]
        notes = requests.get(f"{base}/api/notifications", headers=bearer(token), timeout=10).json()["items"]
        assert [n["type"] for n in notes] == ["job_succeeded"]
        assert (fresh_copy / "var/app.db").exists() and (fresh_copy / "var/broker.db").exists()
    except BaseException:
        print(run.log("make")[-5000:].decode(errors="replace"))
        raise
    finally:
        run.stop()  # back once make, honcho and every process honcho started are gone
