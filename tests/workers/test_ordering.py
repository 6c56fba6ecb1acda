"""A job's end state does not depend on which worker ran first: the deliveries of one job
are applied in the order they were received, whatever the workers, batches and retries."""

import json
import random
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import func, select

from helpers import run_task, wait_for
from helpers.env import WEBHOOK_SECRET
from helpers.processes import Stack
from shared import deliveries, lifecycle
from shared.callbacks import ENDPOINTS
from shared.db import make_sessionmaker
from shared.models import Delivery, Job, JobEvent, JobImage, Notification, utcnow

IMAGES = next(e for e in ENDPOINTS.values() if e.path == "/api/webhooks/image-completion")
HEADERS = {"Content-Type": "application/json", "X-Webhook-Secret": WEBHOOK_SECRET}


def image(n: int) -> dict:
    return {"file_path": f"./img_{n}.png", "url": f"http://backend/img_{n}.png", "format": "PNG",
            "size_bytes": 1000 + n, "dimensions": "512x512"}


def callback(job_id: str, word: str, progress: int | None = None) -> dict:
    """The image backend's report for `job_id`: a progress word, `completed` or `failed`."""
    body = {"job_id": job_id, "status": word}
    if progress is not None:
        body["progress"] = progress
    if word == "completed":
        body["data"] = {"images": [image(1), image(2)], "metadata": {"model_name": "m"}}
    if word == "failed":
        body["error_message"] = f"backend error for {job_id}"
    return body


# Orders a backend and its retries produce: progress, completion and failure in every order.
SEQUENCES = [
    [("completed", None), ("failed", None)],
    [("failed", None), ("completed", None)],
    [("generating", 30), ("completed", None)],
    [("generating", 20), ("generating", 60), ("completed", None), ("failed", None)],
    [("generating", 50), ("failed", None), ("completed", None)],
    [("completed", None), ("generating", 40)],
    [("saving", 80), ("generating", 30), ("failed", None)],
]


def expected(bodies: list[dict]) -> dict:
    """The end state of an auto-created job that gets `bodies` one by one in order (CONTRACT §4)."""
    state, phase, error, images, outcomes = lifecycle.State(lifecycle.DISPATCHED), None, None, 0, 0
    for body in bodies:
        reported = lifecycle.Reported(body["status"], body.get("progress"), error=body.get("error_message"))
        change = lifecycle.decide(state, reported, utcnow())
        if not change.fields:
            continue  # terminal: an event only (artifacts come with a success, stored once)
        state = lifecycle.State(change.fields.get("status", state.status), progress=change.fields["progress"])
        phase, error = change.fields["phase"], change.fields.get("error", error)
        if state.status == lifecycle.SUCCEEDED:
            images = len(body["data"]["images"])
        outcomes += change.notice is not None
    status, progress = state.status, state.progress
    return {"status": status, "progress": progress, "phase": phase, "error": error, "images": images,
            "notifications": outcomes}


def actual(engine, job_id: str) -> dict:
    with engine.connect() as db:
        job = db.execute(select(Job).where(Job.id == job_id)).one()
        return {
            "status": job.status, "progress": job.progress, "phase": job.phase, "error": job.error,
            "images": db.scalar(select(func.count()).select_from(JobImage).where(JobImage.job_id == job_id)),
            "notifications": db.scalar(
                select(func.count()).select_from(Notification)
                .where(Notification.job_id == job_id, Notification.type.in_(("job_succeeded", "job_failed")))
            ),
        }


def applied_order(engine, job_id: str) -> tuple[list[int], list[int]]:
    """The job's deliveries in the order received, and in the order their events were applied."""
    with engine.connect() as db:
        received = db.scalars(select(Delivery.id).where(Delivery.job_id == job_id).order_by(Delivery.id)).all()
        applied = db.scalars(
            select(JobEvent.delivery_pk).where(JobEvent.job_id == job_id).order_by(JobEvent.id)
        ).all()
        return list(received), list(applied)


@pytest.fixture(scope="module")
def busy_stack(settings, n8n, redis_client, tmp_path_factory):
    """web and one worker of 4 processes: a job's deliveries land in different processes."""
    stack = Stack(env={"N8N_JOB_WEBHOOK": n8n.url("/webhook/ai-job")}, workdir=tmp_path_factory.mktemp("ordering"))
    try:
        stack.start_web()
        stack.start_worker(WORKER_CONCURRENCY="4")
        yield stack
    finally:
        stack.stop()


def test_many_workers_apply_each_jobs_callbacks_in_the_order_received(busy_stack, engine):
    run = uuid.uuid4().hex[:8]
    rng = random.Random(run)
    jobs = {f"order-{run}-{n}": rng.choice(SEQUENCES) for n in range(42)}
    plan = {job_id: [callback(job_id, word, progress) for word, progress in steps] for job_id, steps in jobs.items()}

    def send_back_to_back(job_id: str) -> list[int]:
        # One sender per job: each callback is sent once the previous one is answered.
        return [
            requests.post(busy_stack.base_url + IMAGES.path, data=json.dumps(body), headers=HEADERS, timeout=30)
            .status_code
            for body in plan[job_id]
        ]

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(send_back_to_back, plan))
    assert all(code == 200 for codes in answers for code in codes), answers
    total = sum(len(bodies) for bodies in plan.values())

    def all_applied():
        with engine.connect() as db:
            return db.scalar(
                select(func.count()).select_from(Delivery)
                .where(Delivery.job_id.like(f"order-{run}-%"), Delivery.applied_at.is_not(None))
            ) == total

    wait_for(all_applied, timeout=120, message=f"{total} deliveries applied")
    mismatches = {}
    for job_id, bodies in plan.items():
        received, applied = applied_order(engine, job_id)
        if applied != received or actual(engine, job_id) != expected(bodies):
            mismatches[job_id] = {"steps": jobs[job_id], "expected": expected(bodies),
                                  "actual": actual(engine, job_id), "received": received, "applied": applied}
    assert not mismatches, json.dumps(mismatches, indent=1)


# --- the apply step itself, on the test database -----------------------------------------------


@pytest.fixture
def db(engine, database_url):
    return make_sessionmaker(engine)


def record(db, bodies: list[dict]) -> list[int]:
    """Record deliveries as the ingress does (the job id column is the body's), one per body."""
    batch = [
        deliveries.Incoming(IMAGES.name, f"order-{uuid.uuid4()}", body["job_id"],
                            lifecycle.canonical(body["status"]) or "pending", json.dumps(body).encode(), {})
        for body in bodies
    ]
    with db.begin() as session:
        return [r.pk for r in deliveries.record_many(session.connection(), batch)]


@pytest.mark.parametrize("redelivered", [False, True])
def test_the_later_deliverys_message_first_applies_the_earlier_one_before_it(db, engine, redelivered):
    job_id = f"order-unit-{uuid.uuid4()}"
    bodies = [callback(job_id, "completed"), callback(job_id, "failed")]
    first, second = record(db, bodies)
    run_task([second], redelivered=redelivered)  # its worker happens to run first
    assert applied_order(engine, job_id) == ([first, second], [first, second])
    assert actual(engine, job_id) == expected(bodies) == {
        "status": "succeeded", "progress": 100, "phase": "completed", "error": None, "images": 2, "notifications": 1,
    }
    run_task([first])  # its own message, later: already applied with the job's others
    assert applied_order(engine, job_id) == ([first, second], [first, second])


def test_a_given_up_delivery_does_not_hold_back_the_later_ones(db, engine):
    from workers.context import settings

    job_id = f"order-unit-{uuid.uuid4()}"
    bodies = [callback(job_id, "generating", 30), callback(job_id, "failed")]
    given_up, later = record(db, bodies)
    with db.begin() as session:
        session.get(Delivery, given_up).attempts = settings().max_delivery_attempts
    run_task([later])
    assert applied_order(engine, job_id) == ([given_up, later], [later])
    assert actual(engine, job_id)["status"] == "failed"


def test_an_earlier_delivery_that_fails_keeps_the_error_and_holds_back_the_later_one(db, engine):
    from workers.deliveries import DeliveriesFailed

    job_id = f"order-unit-{uuid.uuid4()}"
    broken, later = record(db, [callback(job_id, "generating", 30), callback(job_id, "completed")])
    with db.begin() as session:
        session.get(Delivery, broken).body = b'{"job_id": 1}'  # what a bug in a later release would store
    with pytest.raises(DeliveriesFailed):
        run_task([later])
    with db() as session:
        broken_row, later_row = session.get(Delivery, broken), session.get(Delivery, later)
        assert (broken_row.applied_at, broken_row.attempts) == (None, 1) and "PayloadError" in broken_row.last_error
        # Held back, not charged: it is applied once the broken one is given up.
        assert (later_row.applied_at, later_row.attempts, later_row.last_error) == (None, 0, None)
