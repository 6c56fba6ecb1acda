"""PostgreSQL stopped under load (CONTRACT §2, durability and errors).

While the database is down the ingress answers 503 `unavailable` with `Retry-After`, fast,
and records nothing by halves; when it returns, everything answered 200 is applied exactly
once, the senders' retries of what was answered 503 are accepted and applied, and web,
workers and beat carry on by themselves (no restart). A request in flight at the crash may
be answered 503 although its INSERT committed: it is applied once, and its retry is a
duplicate.

Everything here is private: a PostgreSQL cluster initdb'ed into a temporary directory (the
test stops it with `pg_ctl stop -m immediate`, as a crash would), a redis-server, and a
Stack of gunicorn, a worker and beat on them.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import func, select

from helpers import bearer, burst, hmac_headers, wait_for
from helpers.env import N8N_SECRET
from helpers.postgres import ANSWER_WITHIN, private_postgres_stack
from shared.db import make_sessionmaker
from shared.accounts import create_token
from shared.models import Delivery, Heartbeat, Job, JobEvent, Notification

HOOK = "/api/n8n/hooks/job-status"
@pytest.fixture(scope="module")
def pg_fault(n8n, tmp_path_factory):
    """A private PostgreSQL (migrated), a private Redis and a Stack on both."""
    with private_postgres_stack(tmp_path_factory.mktemp("database-faults"), n8n) as stack:
        yield stack


def delivery_id(body: bytes) -> str:
    """What the ingress names a delivery sent without an id header (CONTRACT §4)."""
    return "sha256:" + hashlib.sha256(body).hexdigest()


class Answer:
    def __init__(self, body: bytes, response: requests.Response | None, seconds: float, error: str | None = None):
        self.body = body
        self.status = response.status_code if response is not None else None
        self.json = _json(response)
        self.retry_after = response.headers.get("Retry-After") if response is not None else None
        self.seconds = seconds
        self.error = error

    def __repr__(self):
        return f"<{self.status} {self.json} in {self.seconds:.2f} s{' ' + self.error if self.error else ''}>"


def _json(response):
    try:
        return response.json() if response is not None else None
    except ValueError:
        return {"not json": response.text[:200]}


def post(stack, body: bytes) -> Answer:
    started = time.monotonic()
    try:
        response = requests.post(stack.base_url + HOOK, data=body, headers=hmac_headers(N8N_SECRET, body),
                                  timeout=ANSWER_WITHIN + 5)
    except requests.RequestException as exc:  # a hang (timeout) or a dropped connection
        return Answer(body, None, time.monotonic() - started, f"{type(exc).__name__}: {exc}")
    return Answer(body, response, time.monotonic() - started)


def post_all(stack, bodies: list[bytes], pace: float = 0.0, answered: list | None = None) -> list[Answer]:
    """Post concurrently; with `pace`, the n-th is sent n × pace seconds after the first. Each
    answer is also appended to `answered` as it comes."""
    start = time.monotonic()

    def send(item):
        index, body = item
        # Pacing is the load's shape (senders at a steady rate), not a wait for anything.
        time.sleep(max(0.0, start + index * pace - time.monotonic()))
        answer = post(stack, body)
        if answered is not None:
            answered.append(answer)
        return answer

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(send, enumerate(bodies)))


def assert_200_or_503(answers: list[Answer]) -> None:
    """Either recorded (200) or refused as unavailable (503 with Retry-After); fast, always."""
    for answer in answers:
        assert answer.error is None, f"no answer: {answer}"
        assert answer.seconds < ANSWER_WITHIN, f"answered after {answer.seconds:.1f} s: {answer}"
        if answer.status == 200:
            assert answer.json["accepted"] is True and answer.json["duplicate"] is False, answer
        else:
            assert answer.status == 503, answer
            assert answer.json["error"] == "unavailable" and answer.json["message"], answer
            assert answer.retry_after and answer.retry_after.isdigit(), answer


def recorded(engine, run: str) -> dict:
    """Deliveries, events, jobs and notifications recorded for this run's jobs."""
    like = f"{run}-%"
    with engine.connect() as db:
        rows = db.execute(select(Delivery.id, Delivery.delivery_id, Delivery.applied_at)
                          .where(Delivery.job_id.like(like))).all()
        return {
            "deliveries": {row.delivery_id for row in rows},
            "unapplied": sum(1 for row in rows if row.applied_at is None),
            "events": db.scalar(select(func.count()).select_from(JobEvent).where(JobEvent.job_id.like(like))),
            "event_deliveries": db.scalar(select(func.count(func.distinct(JobEvent.delivery_pk)))
                                          .where(JobEvent.job_id.like(like))),
            "jobs": set(db.scalars(select(Job.id).where(Job.id.like(like)))),
            "succeeded": set(db.scalars(select(Job.id).where(Job.id.like(like), Job.status == "succeeded"))),
            "notifications": db.scalar(
                select(func.count()).select_from(Notification)
                .where(Notification.job_id.like(like), Notification.type == "job_succeeded")
            ),
        }


def assert_applied_exactly_once(engine, run: str, accepted: list[bytes]) -> dict:
    """Exactly the accepted bodies are recorded, each applied once: one event each, and one
    notification per job whose success was accepted."""
    expected_ids = {delivery_id(body) for body in accepted}
    jobs = {body_job(body) for body in accepted}
    succeeded = {body_job(body) for body in accepted if b'"succeeded"' in body}
    last: dict = {}

    def done():
        state = recorded(engine, run)
        last.update(missing=sorted(expected_ids - state["deliveries"]),
                    refused_but_recorded=sorted(state["deliveries"] - expected_ids), unapplied=state["unapplied"])
        return state if state["deliveries"] == expected_ids and state["unapplied"] == 0 else None

    try:
        final = wait_for(done, timeout=120, message=f"the {len(expected_ids)} accepted deliveries recorded and applied")
    except AssertionError as exc:
        with engine.connect() as db:
            unapplied = db.execute(select(Delivery.delivery_id, Delivery.attempts, Delivery.last_error)
                                   .where(Delivery.job_id.like(f"{run}-%"), Delivery.applied_at.is_(None))).all()
        raise AssertionError(f"{exc}; {last}; unapplied rows: {[tuple(row) for row in unapplied]}") from None
    assert final["events"] == final["event_deliveries"] == len(expected_ids)
    assert final["jobs"] == jobs
    assert final["succeeded"] == succeeded
    assert final["notifications"] == len(succeeded)
    return final


def body_job(body: bytes) -> str:
    return json.loads(body)["job_id"]


def canary_at(engine):
    with engine.connect() as db:
        return db.scalar(select(Heartbeat.beat_at).where(Heartbeat.name == "canary"))


def test_database_stopped_503_nothing_half_recorded_all_resumes(pg_fault, n8n, reliability):
    stack, pg, engine = pg_fault, pg_fault.pg, pg_fault.engine
    with make_sessionmaker(engine).begin() as db:
        token = create_token(db, f"pg-fault-{uuid.uuid4().hex[:6]}")
    processes = {name: proc.pid for name, proc in stack.procs.items()}
    wait_for(lambda: canary_at(engine), timeout=30, message="beat's canary ran once")

    run = f"pgdown-{uuid.uuid4().hex[:8]}"
    jobs = 12
    bodies = burst(run, jobs)
    before, during, down = bodies[:12], bodies[12:24], bodies[24:]

    # 1. The database is up: everything is recorded.
    answers = post_all(stack, before)
    assert_200_or_503(answers)
    assert [a.status for a in answers] == [200] * len(before)

    # 2. PostgreSQL stops (as a crash: immediate) while senders are posting.
    worker_log_at = len(stack.log("worker"))
    sender_answers: list[Answer] = []
    so_far: list[Answer] = []
    sender = threading.Thread(target=lambda: sender_answers.extend(post_all(stack, during, pace=0.1, answered=so_far)))
    sender.start()
    try:
        wait_for(lambda: len(so_far) >= 3, timeout=60, message="the senders under way")
        pg.stop("immediate")
        sender.join()
        assert_200_or_503(sender_answers)

        # 3. Down: every answer is a fast 503 with Retry-After; readiness and the API say so too.
        down_answers = post_all(stack, down)
        assert_200_or_503(down_answers)
        assert [a.status for a in down_answers] == [503] * len(down)
        ready = requests.get(stack.base_url + "/readyz", timeout=ANSWER_WITHIN)
        assert ready.status_code == 503 and ready.headers.get("Retry-After")
        assert ready.json()["checks"]["database"] != "ok" and ready.json()["checks"]["broker"] == "ok"
        started = time.monotonic()
        create = requests.post(stack.base_url + "/api/jobs", json={"job_type": "cover_letter"},
                               headers=bearer(token), timeout=ANSWER_WITHIN + 5)
        assert time.monotonic() - started < ANSWER_WITHIN
        assert (create.status_code, create.json()["error"]) == (503, "unavailable"), create.text
        assert create.headers.get("Retry-After")
        listing = requests.get(stack.base_url + "/api/jobs", headers=bearer(token), timeout=ANSWER_WITHIN + 5)
        assert (listing.status_code, listing.json()["error"]) == (503, "unavailable"), listing.text
        # Down until the worker met the outage too (beat's sweeps run every second).
        wait_for(lambda: b"OperationalError" in stack.log("worker")[worker_log_at:], timeout=60,
                 message="the worker to meet the outage")
    finally:
        sender.join()
        if not pg.running():
            pg.start()

    # 4. Back: web, worker and beat carry on by themselves (the same processes).
    wait_for(lambda: requests.get(stack.base_url + "/readyz", timeout=5).status_code == 200, timeout=60,
             message="/readyz 200 again")
    assert {name: proc.pid for name, proc in stack.procs.items()} == processes
    assert all(proc.poll() is None for proc in stack.procs.values()), "a process died during the outage"
    restarted = canary_at(engine)
    wait_for(lambda: canary_at(engine) > restarted, timeout=30, message="beat's canary runs again")

    # Every delivery answered 200 is applied exactly once. A 503 is recorded only when
    # PostgreSQL died after committing its INSERT and before answering it (the commit's
    # outcome went with the connection): possible for the requests in flight at the crash,
    # never once the database was down. Such a delivery is applied once like the others,
    # and the sender's retry finds it: nothing is half-recorded.
    answered = answers + sender_answers + down_answers
    accepted = [a.body for a in answered if a.status == 200]
    refused = [a.body for a in answered if a.status == 503]
    assert len(accepted) + len(refused) == len(bodies)
    accepted_ids = {delivery_id(body) for body in accepted}
    settled = wait_for(lambda: (r := recorded(engine, run))["deliveries"] >= accepted_ids and not r["unapplied"] and r,
                       timeout=120, message="the accepted deliveries recorded and applied")
    recorded_anyway = settled["deliveries"] - accepted_ids
    at_the_crash = {delivery_id(a.body) for a in sender_answers if a.status == 503}
    assert recorded_anyway <= at_the_crash, "a request answered 503 while the database was down was recorded"
    assert_applied_exactly_once(engine, run, accepted + [b for b in refused if delivery_id(b) in recorded_anyway])

    # 5. The senders retry what was refused: accepted now (a duplicate only if it was
    # recorded after all) and applied.
    retries = post_all(stack, refused)
    assert [(a.status, a.json.get("duplicate")) for a in retries] == [
        (200, delivery_id(a.body) in recorded_anyway) for a in retries], retries
    applied = assert_applied_exactly_once(engine, run, bodies)
    reliability.fault("PostgreSQL stopped (crash) under load", accepted=len(bodies),
                      applied_once=len(applied["deliveries"]), events=applied["events"])
    with engine.connect() as db:
        assert db.scalar(select(func.count()).select_from(Job).where(Job.id.like(f"{run}-%"),
                                                                      Job.status == "succeeded")) == jobs

    created = requests.post(stack.base_url + "/api/jobs", json={"job_type": "cover_letter"},
                            headers=bearer(token), timeout=10)
    assert created.status_code == 202, created.text
    # The job refused with 503 during the outage left nothing behind: this is the only one.
    mine = requests.get(stack.base_url + "/api/jobs", headers=bearer(token), timeout=10).json()["items"]
    assert [job["id"] for job in mine] == [created.json()["id"]]
    wait_for(lambda: n8n.for_job(created.json()["id"]), timeout=30, message="a new job dispatched to n8n")
    # No request was ever answered 500 (gunicorn's access log: '<ip> "<request>" <status> ...').
    assert b'" 500 ' not in stack.log("web"), stack.log("web").decode(errors="replace")[-3000:]
