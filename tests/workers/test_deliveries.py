"""workers/deliveries.py, its task body run in-process: deliveries are applied a batch per
message, one bad delivery holds back none of the others, and every attempt is counted once,
including for a message that comes back after its worker died."""

import json
import uuid

import pytest
from sqlalchemy import select

from helpers import run_task
from shared import deliveries
from shared.callbacks import ENDPOINTS
from shared.models import Delivery, Job, JobEvent
from shared.db import make_sessionmaker

HOOK = next(e for e in ENDPOINTS.values() if e.path == "/api/n8n/hooks/job-status")


@pytest.fixture
def db(engine, database_url):
    return make_sessionmaker(engine)


def recorded(db, bodies: list[bytes]) -> list[int]:
    batch = [
        deliveries.Incoming(HOOK.name, f"batch-{uuid.uuid4()}", f"job-{uuid.uuid4()}", "running", body, {})
        for body in bodies
    ]
    with db.begin() as session:
        return [r.pk for r in deliveries.record_many(session.connection(), batch)]


def good(progress=10) -> bytes:
    return json.dumps({"job_id": f"batch-job-{uuid.uuid4()}", "status": "running", "progress": progress}).encode()


def state(db, pk):
    with db() as session:
        row = session.get(Delivery, pk)
        events = session.scalars(select(JobEvent).where(JobEvent.delivery_pk == pk)).all()
        return row.applied_at is not None, row.attempts, row.last_error, len(events)


def test_a_batch_is_applied_once_in_one_go(db):
    pks = recorded(db, [good(10), good(20), good(30)])
    assert "applied" in run_task(pks)
    assert [state(db, pk) for pk in pks] == [(True, 1, None, 1)] * 3
    run_task(pks)  # the same message again (a redelivery after the commit): nothing changes
    assert [state(db, pk) for pk in pks] == [(True, 1, None, 1)] * 3


def test_one_bad_delivery_does_not_hold_back_its_batch(db):
    # Stored bytes that no longer load: what a bug in a later release would look like.
    pks = recorded(db, [good(), b'{"job_id": 1}', good()])
    from workers.deliveries import DeliveriesFailed

    with pytest.raises(DeliveriesFailed, match=str(pks[1])):
        run_task(pks)
    assert state(db, pks[0]) == (True, 1, None, 1)
    assert state(db, pks[2]) == (True, 1, None, 1)
    applied, attempts, error, events = state(db, pks[1])
    assert (applied, attempts, events) == (False, 1, 0) and "PayloadError" in error


def test_a_delivery_that_keeps_failing_is_given_up_after_max_attempts(db):
    from workers.deliveries import DeliveriesFailed

    from workers.context import settings

    MAX_ATTEMPTS = settings().max_delivery_attempts
    [pk] = recorded(db, [b'{"job_id": 1}'])
    with pytest.raises(DeliveriesFailed):
        run_task([pk])  # fresh: the attempt is counted with the failure
    for _ in range(MAX_ATTEMPTS - 1):
        with pytest.raises(DeliveriesFailed):
            run_task([pk], redelivered=True)  # came back after a crash: counted before the work
    assert state(db, pk)[1] == MAX_ATTEMPTS
    run_task([pk], redelivered=True)  # given up: nothing tried, nothing raised
    run_task([pk])
    assert state(db, pk)[:2] == (False, MAX_ATTEMPTS)


def test_two_deliveries_for_one_job_in_a_batch_apply_in_order_received(db):
    job_id = f"batch-job-{uuid.uuid4()}"
    bodies = [json.dumps({"job_id": job_id, "status": s, "progress": p}).encode()
              for s, p in (("running", 40), ("completed", 100))]
    pks = recorded(db, bodies)
    run_task(list(reversed(pks)))
    with db() as session:
        job = session.get(Job, job_id)
        assert (job.status, job.progress) == ("succeeded", 100)
        events = session.scalars(select(JobEvent.delivery_pk).where(JobEvent.job_id == job_id).order_by(JobEvent.id))
        assert list(events) == pks
