"""Every Procfile process from a fresh clone (no var/), started as a Procfile runner starts
it: `sh -c` on the Procfile's own line, each process type on its own PORT as honcho gives
them (web P, worker P+100, beat P+200), PUBLIC_BASE_URL unset (CONTRACT §1, §7)."""

from __future__ import annotations

import os
import secrets
import subprocess

import pytest
import requests

from helpers import bearer, wait_for
from helpers.env import PG_ADMIN_URL
from helpers.postgres import fresh_database as new_database
from helpers.processes import BIN, Stack, free_port
from helpers.redis_server import RedisServer

NOT_INHERITED = {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "VAR_DIR", "PUBLIC_BASE_URL", "PORT",
                 "FLOWER_BASIC_AUTH", "FLOWER_PORT"}


def clone_env(**extra: str) -> dict:
    """The test run's environment (secrets, SWEEP_INTERVAL=1, ...) without its URLs, with the
    virtualenv's bin first on PATH as an activated virtualenv has it."""
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    env["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**env, **extra}


def doctor(clone, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", "flask --app ingress doctor"], cwd=clone, env=env,
                          capture_output=True, text=True, timeout=60)


def ready(stack: Stack):
    try:
        answer = requests.get(stack.base_url + "/readyz", timeout=5)
    except requests.RequestException:
        return None
    return answer if answer.status_code == 200 else None


def job(stack: Stack, token: str, job_id: str) -> dict:
    return requests.get(f"{stack.base_url}/api/jobs/{job_id}", headers=bearer(token), timeout=10).json()


@pytest.fixture
def fresh_database():
    """A PostgreSQL database of its own, empty: the Procfile's `release` migrates it."""
    with new_database(PG_ADMIN_URL, f"bridge_fresh_{os.getpid()}_{secrets.token_hex(3)}") as url:
        yield url


@pytest.fixture
def broker(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


def test_procfile_processes_from_a_fresh_clone(fresh_copy, fresh_database, broker, n8n, tmp_path_factory):
    env = clone_env(DATABASE_URL=fresh_database, REDIS_URL=broker.url, N8N_JOB_WEBHOOK=n8n.url("/webhook/ai-job"))
    stack = Stack(env, tmp_path_factory.mktemp("logs"), root=fresh_copy, inherit=False)
    port = stack.port
    stack.release()
    try:
        stack.spawn("web", PORT=str(port))
        stack.spawn("worker", PORT=str(port + 100))
        stack.spawn("beat", PORT=str(port + 200))
        stack.wait_http("/healthz")
        stack.wait_log("worker", b"ready.", timeout=60)
        wait_for(lambda: ready(stack), timeout=60, message="/readyz 200 with beat and a worker running")

        from shared.db import make_engine, make_sessionmaker
        from shared.accounts import create_token

        engine = make_engine(fresh_database)
        with make_sessionmaker(engine).begin() as db:
            token = create_token(db, "fresh-owner")
        engine.dispose()

        # n8n answers the first dispatch 503: only the dispatch sweep sends the second one.
        created = requests.post(stack.base_url + "/api/jobs", headers=bearer(token), timeout=10,
                                json={"job_type": "fresh", "params": {"respond": [503, 200]}}).json()
        dispatched = wait_for(lambda: (j := job(stack, token, created["id"]))["status"] == "dispatched" and j,
                              timeout=60, message="the job dispatched after a 503")
        assert dispatched["attempts"] == 2
        sent = n8n.for_job(created["id"])
        assert len(sent) == 2
        # The web's port, not the worker's (honcho's PORT + 100).
        assert {r.payload["callback_url"] for r in sent} == {f"http://127.0.0.1:{port}/api/n8n/hooks/job-status"}

        # A callback accepted while no worker runs, whose broker message is then lost.
        stack.stop_process("worker")
        answer = n8n.post_callback(sent[-1].payload["callback_url"],
                                   {"job_id": created["id"], "status": "succeeded", "result": {"text": "done"}})
        assert answer.status_code == 200 and answer.json()["accepted"] is True
        redis = broker.client()
        wait_for(lambda: redis.llen("celery"), message="the delivery's message in the broker")
        redis.flushall()
        stack.spawn("worker", PORT=str(port + 100))
        done = wait_for(lambda: (j := job(stack, token, created["id"]))["status"] == "succeeded" and j,
                        timeout=60, message="the flushed delivery applied by the redeliver sweep")
        assert [e["status"] for e in done["events"]] == ["retrying", "dispatched", "succeeded"]
        wait_for(lambda: ready(stack), timeout=60, message="/readyz 200 again with the worker back")
        assert all(proc.poll() is None for proc in stack.procs.values()), "a process exited"

        # beat stops: /readyz and doctor name it.
        stack.stop_process("beat")

        def not_ready():
            answer = requests.get(stack.base_url + "/readyz", timeout=5)
            return (answer.headers, answer.json()) if answer.status_code == 503 else None

        headers, body = wait_for(not_ready, timeout=30, message="/readyz 503 once beat stopped")
        assert headers.get("Retry-After")
        checks = body["checks"]
        assert "is the beat process running?" in checks["beat"], checks
        assert checks["database"] == checks["broker"] == "ok"
        report = doctor(fresh_copy, env)
        assert report.returncode != 0, report.stdout
        assert "is the beat process running?" in report.stdout and "All good." not in report.stdout
        # doctor prints the callback URL the workers send, and it answers.
        assert f"POST http://127.0.0.1:{port}/api/n8n/hooks/job-status" in report.stdout
        assert "callback URL    answers" in report.stdout, report.stdout
        assert stack.procs["web"].poll() is None and stack.procs["worker"].poll() is None
    except BaseException:
        for name in ("web", "worker", "beat"):
            print(f"--- {name}\n{stack.log(name)[-3000:].decode(errors='replace')}")
        raise
    finally:
        stack.stop()


@pytest.mark.parametrize("first", ["worker", "beat"])
def test_embedded_default_whichever_process_starts_first(first, fresh_copy, n8n, tmp_path_factory):
    """No DATABASE_URL, no REDIS_URL: SQLite and the sqla+sqlite broker under var/, which the
    first process to start makes, whichever it is."""
    env = clone_env(N8N_JOB_WEBHOOK=n8n.url("/webhook/ai-job"), FLOWER_PORT=str(free_port()))
    stack = Stack(env, tmp_path_factory.mktemp("logs"), root=fresh_copy, inherit=False)
    port = stack.port
    other = {"worker": "beat", "beat": "worker"}[first]
    try:
        stack.spawn(first, PORT=str(port + 100))
        stack.wait_log(first, b"ready." if first == "worker" else b"Sending due task", timeout=60)
        assert (fresh_copy / "var/broker.db").exists()
        stack.release()
        stack.spawn(other, PORT=str(port + 200))
        stack.spawn("web", PORT=str(port))
        stack.spawn("flower")
        wait_for(lambda: ready(stack), timeout=90, message="/readyz 200 on the embedded default")
        flower = f"http://127.0.0.1:{env['FLOWER_PORT']}/"

        def flower_answers():
            try:
                return requests.get(flower, timeout=5).status_code == 200
            except requests.RequestException:
                return False

        wait_for(flower_answers, timeout=60, message="Flower on loopback")
        assert all(proc.poll() is None for proc in stack.procs.values()), "a process exited"
    except BaseException:
        for name in ("web", "worker", "beat", "flower"):
            print(f"--- {name}\n{stack.log(name)[-3000:].decode(errors='replace')}")
        raise
    finally:
        stack.stop()
