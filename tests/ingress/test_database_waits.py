"""Every wait for PostgreSQL is bounded (DATABASE_TIMEOUT): a database that hangs, a pool
with no free connection or a server frozen mid-conversation is answered 503 `unavailable`
with Retry-After, within the bound a crashed server gets; and no log line carries what a
client sent in a statement's parameters."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import replace

import pytest
import requests
from sqlalchemy import text

from helpers import bearer, body_of, hmac_headers, wait_for
from helpers.env import N8N_SECRET
from helpers.postgres import ANSWER_WITHIN, private_postgres_stack

HOOK = "/api/n8n/hooks/job-status"


@pytest.fixture
def bounded_app(settings, redis_client):
    """An ingress whose database waits end after 1 s."""
    from ingress import create_app

    app = create_app(replace(settings, database_timeout=1.0))
    yield app
    app.extensions["engine"].dispose()
    app.extensions["autocommit_engine"].dispose()


def answered_within(bound: float, send):
    """The answer of `send()`, run aside; fails if there is none within `bound` seconds."""
    answers = []
    sender = threading.Thread(target=lambda: answers.append(send()), daemon=True)
    sender.start()
    sender.join(bound)
    assert answers, f"no answer within {bound} s"
    return answers[0]


def assert_unavailable(response) -> None:
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.json["error"] == "unavailable" and response.json["message"]
    assert response.headers["Retry-After"].isdigit()


def test_no_free_connection_in_the_pool_is_503_not_500(bounded_app, users):
    _, token = users("pooled")
    engine = bounded_app.extensions["engine"]
    held = [engine.connect() for _ in range(engine.pool.size() + engine.pool._max_overflow)]
    try:
        response = answered_within(ANSWER_WITHIN, lambda: bounded_app.test_client().get(
            "/api/jobs", headers=bearer(token)))
    finally:
        for connection in held:
            connection.close()
    assert_unavailable(response)
    assert bounded_app.test_client().get("/api/jobs", headers=bearer(token)).status_code == 200


def test_a_statement_waiting_past_the_bound_is_503_and_logs_no_parameters(bounded_app, engine, users, caplog):
    """A lock held elsewhere stands for any database that does not answer: the writer's
    INSERT and a job's INSERT both give up; their errors are logged without the bodies."""
    _, token = users("waiting")
    marker = f"personal-{uuid.uuid4().hex}"
    delivery = body_of({"job_id": f"wait-{uuid.uuid4()}", "status": "running", "message": marker})
    client = bounded_app.test_client()
    with engine.connect() as holder, holder.begin():
        holder.execute(text("LOCK TABLE deliveries, jobs IN EXCLUSIVE MODE"))
        hook = answered_within(ANSWER_WITHIN, lambda: client.post(
            HOOK, data=delivery, headers=hmac_headers(N8N_SECRET, delivery)))
        job = answered_within(ANSWER_WITHIN, lambda: client.post(
            "/api/jobs", json={"job_type": "cover_letter", "params": {"note": marker}}, headers=bearer(token)))
    assert_unavailable(hook)
    assert_unavailable(job)
    # Logged with their tracebacks, which name the statements, not what they carried.
    assert "[SQL: WITH batch" in caplog.text and "INSERT INTO deliveries" in caplog.text, caplog.text
    assert "[SQL: INSERT INTO jobs" in caplog.text, caplog.text
    assert "parameters hidden" in caplog.text
    assert marker not in caplog.text
    # The pools recover by themselves.
    again = body_of({"job_id": f"wait-{uuid.uuid4()}", "status": "running"})
    assert client.post(HOOK, data=again, headers=hmac_headers(N8N_SECRET, again)).status_code == 200
    assert client.post("/api/jobs", json={"job_type": "cover_letter"}, headers=bearer(token)).status_code == 202


@pytest.fixture(scope="module")
def frozen_stack(n8n, tmp_path_factory):
    """web, worker and beat on a private PostgreSQL (to freeze) and a private Redis."""
    with private_postgres_stack(tmp_path_factory.mktemp("frozen-database"), n8n) as stack:
        yield stack


def test_a_frozen_database_is_503_within_the_bound_and_all_resumes(frozen_stack, n8n):
    from shared.db import make_sessionmaker
    from shared.accounts import create_token

    stack, pg = frozen_stack, frozen_stack.pg
    with make_sessionmaker(stack.engine).begin() as db:
        token = create_token(db, f"frozen-{uuid.uuid4().hex[:6]}")
    marker = f"personal-{uuid.uuid4().hex}"
    created = requests.post(stack.base_url + "/api/jobs", json={"job_type": "cover_letter"},
                            headers=bearer(token), timeout=10)
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]

    def signed_hook(run: str):
        body = body_of({"job_id": f"frozen-{uuid.uuid4()}", "status": "running", "message": f"{run} {marker}"})
        return requests.post(stack.base_url + HOOK, data=body, headers=hmac_headers(N8N_SECRET, body),
                             timeout=ANSWER_WITHIN + 10)

    requests_of = {
        "POST /api/jobs": lambda: requests.post(
            stack.base_url + "/api/jobs", json={"job_type": "cover_letter", "params": {"note": marker}},
            headers=bearer(token), timeout=ANSWER_WITHIN + 10),
        "GET /api/jobs/<id>": lambda: requests.get(
            f"{stack.base_url}/api/jobs/{job_id}", headers=bearer(token), timeout=ANSWER_WITHIN + 10),
        "GET /api/jobs": lambda: requests.get(
            stack.base_url + "/api/jobs", headers=bearer(token), timeout=ANSWER_WITHIN + 10),
        "signed webhook": lambda: signed_hook("frozen"),
        "/readyz": lambda: requests.get(stack.base_url + "/readyz", timeout=ANSWER_WITHIN + 10),
    }
    # /readyz is ready once beat ticked and a worker ran its canary.
    wait_for(lambda: requests.get(stack.base_url + "/readyz", timeout=10).status_code == 200, timeout=60,
             message="/readyz 200 once beat and the worker run")
    # Every pool holds connections to the server that is about to stop answering.
    for name, send in requests_of.items():
        if name != "POST /api/jobs":
            assert send().status_code == 200, name
    processes = {name: proc.pid for name, proc in stack.procs.items()}
    worker_log_at = len(stack.log("worker"))

    with pg.frozen():
        # Twice: first on the pools' connections (a statement that gets no answer), then on
        # new ones (a connection the server's kernel accepts and nobody answers).
        for _ in range(2):
            for name, send in requests_of.items():
                started = time.monotonic()
                response = send()
                seconds = time.monotonic() - started
                assert seconds < ANSWER_WITHIN, f"{name} answered after {seconds:.1f} s"
                assert response.status_code == 503, (name, response.text)
                assert response.headers["Retry-After"].isdigit(), name
                if name == "/readyz":
                    assert response.json()["checks"]["database"] != "ok"
                else:
                    assert response.json()["error"] == "unavailable", (name, response.text)
        # The worker's waits are bounded too: its sweeps fail instead of hanging.
        wait_for(lambda: b"did not answer within" in stack.log("worker")[worker_log_at:], timeout=30,
                 message="the worker's sweeps failing on the frozen database")

    # Continued: the same processes answer again, the worker dispatches again.
    wait_for(lambda: requests.get(stack.base_url + "/readyz", timeout=10).status_code == 200, timeout=60,
             message="/readyz 200 again")
    for name, send in requests_of.items():
        response = send()
        assert response.status_code == (202 if name == "POST /api/jobs" else 200), (name, response.text)
    again = requests.post(stack.base_url + "/api/jobs", json={"job_type": "cover_letter"},
                          headers=bearer(token), timeout=10)
    wait_for(lambda: n8n.for_job(again.json()["id"]), timeout=30, message="a new job dispatched to n8n")
    assert {name: proc.pid for name, proc in stack.procs.items()} == processes
    assert all(proc.poll() is None for proc in stack.procs.values()), "a process died during the freeze"
    for name in ("web", "worker", "beat"):
        assert marker.encode() not in stack.log(name), f"a client's data in the {name} log"
    assert b'" 500 ' not in stack.log("web"), stack.log("web").decode(errors="replace")[-3000:]
