"""A backend that calls back under its own id before our dispatch has recorded that id:
whichever arrives first, the end state is one job (the original) with every event,
artifact and notification on it, and no orphan (CONTRACT §4, §6)."""

import json
import threading
import uuid

import pytest
from sqlalchemy import func, select, text

from helpers import wait_for
from shared import deliveries, dispatch
from shared.callbacks import ENDPOINTS
from shared.db import make_sessionmaker
from shared.accounts import get_or_create_user
from shared.jobs import create_job
from shared.models import Delivery, Job, JobEvent, JobImage, Notification, utcnow

IMAGES = next(e for e in ENDPOINTS.values() if e.path == "/api/webhooks/image-completion")
MAX_ATTEMPTS = 10


def progress(backend_id: str) -> dict:
    return {"job_id": backend_id, "status": "generating", "progress": 40, "message": "Génération en cours..."}


def completed(backend_id: str) -> dict:
    return {"job_id": backend_id, "status": "completed", "data": {
        "images": [{"url": f"http://backend/{backend_id}/{n}.png", "format": "PNG", "dimensions": "64x64"}
                   for n in (1, 2)],
        "metadata": {"model_name": "gemini-2.0-flash-exp"},
    }}


def record(session, bodies: list[dict]) -> list[int]:
    """Record deliveries as the ingress does, under the job id each body names."""
    batch = [
        deliveries.Incoming(IMAGES.name, f"merge-{uuid.uuid4()}", body["job_id"], "running",
                            json.dumps(body).encode(), {})
        for body in bodies
    ]
    return [r.pk for r in deliveries.record_many(session.connection(), batch)]


def original_job(session) -> Job:
    """A job of ours, claimed for its first dispatch attempt."""
    owner = get_or_create_user(session, f"merge-owner-{uuid.uuid4().hex[:8]}")
    job, _ = create_job(session, owner, "image_generation", {})
    session.flush()
    return dispatch.claim(session, job.id, utcnow())


def answered_with(backend_id: str) -> dispatch.Outcome:
    return dispatch.Outcome("ok", http_status=200, external_id=backend_id)


def state(session, job_id: str, backend_id: str) -> dict:
    """What a user sees of the original job, and what is left under the backend's id."""
    def count(model, *where):
        return session.scalar(select(func.count()).select_from(model).where(*where))

    job = session.execute(select(Job.status, Job.progress, Job.external_id).where(Job.id == job_id)).one()
    return {
        "job": tuple(job),
        "callbacks": session.scalars(
            select(JobEvent.delivery_pk).where(JobEvent.job_id == job_id, JobEvent.kind == "callback")
            .order_by(JobEvent.id)
        ).all(),
        "images": count(JobImage, JobImage.job_id == job_id),
        "notifications": session.scalars(
            select(Notification.type).where(Notification.job_id == job_id).order_by(Notification.id)
        ).all(),
        "left under the backend's id": [
            count(Job, Job.id == backend_id),
            count(JobEvent, JobEvent.job_id == backend_id),
            count(JobImage, JobImage.job_id == backend_id),
            count(Notification, Notification.job_id == backend_id),
        ],
    }


def test_callbacks_first_then_the_dispatch_answer_merge_the_auto_created_job(session, settings):
    job = original_job(session)
    backend_id = f"backend-{uuid.uuid4()}"
    pks = record(session, [progress(backend_id), completed(backend_id)])
    deliveries.apply(session, pks, MAX_ATTEMPTS)
    orphan = session.get(Job, backend_id)
    assert (orphan.source, orphan.status) == ("callback", "succeeded")  # what today's code leaves behind

    recorded = dispatch.record(session, settings, job.id, answered_with(backend_id))
    assert recorded.redeliver == pks
    assert session.scalars(select(Delivery.applied_at).where(Delivery.id.in_(pks))).all() == [None, None]
    deliveries.apply(session, recorded.redeliver, MAX_ATTEMPTS)  # what the dispatch task enqueues

    assert state(session, job.id, backend_id) == {
        "job": ("succeeded", 100, backend_id),
        "callbacks": pks,
        "images": 2,
        "notifications": ["job_succeeded"],
        "left under the backend's id": [0, 0, 0, 0],
    }
    assert session.scalar(select(Notification.user_id).where(Notification.job_id == job.id)) == job.user_id


def test_dispatch_answer_first_then_the_callbacks_complete_the_original(session, settings):
    job = original_job(session)
    backend_id = f"backend-{uuid.uuid4()}"
    assert dispatch.record(session, settings, job.id, answered_with(backend_id)).redeliver == []
    pks = record(session, [progress(backend_id), completed(backend_id)])
    deliveries.apply(session, pks, MAX_ATTEMPTS)
    assert state(session, job.id, backend_id) == {
        "job": ("succeeded", 100, backend_id),
        "callbacks": pks,
        "images": 2,
        "notifications": ["job_succeeded"],
        "left under the backend's id": [0, 0, 0, 0],
    }


def test_a_job_of_ours_under_the_backends_id_is_not_merged(session, settings):
    job, ours = original_job(session), original_job(session)
    assert dispatch.record(session, settings, job.id, answered_with(ours.id)).redeliver == []
    assert session.get(Job, ours.id).status == "pending"


# --- the races, on committed transactions ------------------------------------------------------


@pytest.fixture
def db(engine, database_url):
    return make_sessionmaker(engine)


def waiting_on_a_lock(db, statement: str) -> bool:
    """Whether a session of this database waits for a lock in a statement containing `statement`."""
    with db() as session:
        return bool(session.scalar(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND strpos(query, :statement) > 0"
        ), {"statement": statement}))


def in_thread(work) -> threading.Thread:
    errors = []

    def run():
        try:
            work()
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.errors = errors
    thread.start()
    return thread


def joined(thread: threading.Thread) -> None:
    thread.join(timeout=60)
    assert not thread.is_alive() and not thread.errors, thread.errors


@pytest.fixture
def dispatched(db):
    """The original job, claimed for dispatch (committed); and a fresh backend id."""
    with db.begin() as session:
        job_id = original_job(session).id
    return job_id, f"backend-{uuid.uuid4()}"


def end_state(db, job_id, backend_id, redeliver=()):
    if redeliver:
        with db.begin() as session:
            deliveries.apply(session, list(redeliver), MAX_ATTEMPTS)
    with db() as session:
        return state(session, job_id, backend_id)


def test_dispatch_answer_while_a_callback_auto_creates_the_job_waits_and_merges(db, settings, dispatched):
    job_id, backend_id = dispatched
    with db.begin() as session:
        [pk] = record(session, [completed(backend_id)])
    redeliver = []
    with db.begin() as worker:
        deliveries.apply(worker, [pk], MAX_ATTEMPTS)  # auto-creates the job: not committed yet

        def answer():
            with db.begin() as session:
                redeliver.extend(dispatch.record(session, settings, job_id, answered_with(backend_id)).redeliver)

        thread = in_thread(answer)
        wait_for(lambda: waiting_on_a_lock(db, "pg_advisory_xact_lock"),
                 message="the dispatch answer waiting for the callback's job")
    joined(thread)
    assert redeliver == [pk]
    assert end_state(db, job_id, backend_id, redeliver) == {
        "job": ("succeeded", 100, backend_id), "callbacks": [pk], "images": 2, "notifications": ["job_succeeded"],
        "left under the backend's id": [0, 0, 0, 0],
    }


def test_callback_while_the_dispatch_answer_is_recorded_waits_and_finds_the_original(db, settings, dispatched):
    job_id, backend_id = dispatched
    with db.begin() as session:
        [pk] = record(session, [completed(backend_id)])
    with db.begin() as session:
        assert dispatch.record(session, settings, job_id, answered_with(backend_id)).redeliver == []

        def apply():
            with db.begin() as worker:
                deliveries.apply(worker, [pk], MAX_ATTEMPTS)

        thread = in_thread(apply)
        wait_for(lambda: waiting_on_a_lock(db, "pg_advisory_xact_lock"),
                 message="the callback waiting for the dispatch answer")
    joined(thread)
    assert end_state(db, job_id, backend_id) == {
        "job": ("succeeded", 100, backend_id), "callbacks": [pk], "images": 2, "notifications": ["job_succeeded"],
        "left under the backend's id": [0, 0, 0, 0],
    }


def test_dispatch_answer_while_a_callback_is_applied_to_the_auto_created_job(db, settings, dispatched):
    job_id, backend_id = dispatched
    with db.begin() as session:
        first, second = record(session, [progress(backend_id), completed(backend_id)])
        deliveries.apply(session, [first], MAX_ATTEMPTS)  # the auto-created job exists, committed
    redeliver = []
    with db.begin() as worker:
        deliveries.apply(worker, [second], MAX_ATTEMPTS)  # holds its lock: not committed yet

        def answer():
            with db.begin() as session:
                redeliver.extend(dispatch.record(session, settings, job_id, answered_with(backend_id)).redeliver)

        thread = in_thread(answer)
        wait_for(lambda: waiting_on_a_lock(db, "FOR UPDATE"), message="the dispatch answer waiting for the callback")
    joined(thread)
    assert redeliver == [first, second]  # the one committed meanwhile included
    assert end_state(db, job_id, backend_id, redeliver) == {
        "job": ("succeeded", 100, backend_id), "callbacks": [first, second], "images": 2,
        "notifications": ["job_succeeded"], "left under the backend's id": [0, 0, 0, 0],
    }
