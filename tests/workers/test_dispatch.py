"""workers/dispatch.py, its task body run in-process against the n8n stand-in: a due job is
sent and ends dispatched; an answer naming the sender's own id merges the job its early
callbacks made, whose deliveries are published again only once that merge is committed."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from helpers import run_task
from shared import deliveries, jobs
from shared.callbacks import ENDPOINTS
from shared.models import Delivery, Job, User
from shared.queue import APPLY_DELIVERIES
from workers import context
from workers.dispatch import send

HOOK = next(e for e in ENDPOINTS.values() if e.path == "/api/n8n/hooks/job-status")


@pytest.fixture
def published(monkeypatch, settings, n8n, engine):
    """The worker on the test database and the n8n stand-in; what it publishes, with whether
    the database already showed its work committed at that moment."""
    monkeypatch.setattr(context, "settings", lambda: replace(settings, n8n_job_webhook=n8n.url("/webhook/ai-job")))
    sent = []

    def enqueue(task_name, **kwargs):
        with engine.connect() as connection:
            applied = {pk: connection.scalar(select(Delivery.applied_at).where(Delivery.id == pk))
                       for pk in kwargs.get("delivery_pks", [])}
        sent.append((task_name, kwargs, applied))

    monkeypatch.setattr(context, "enqueue", enqueue)
    return sent


def pending_job(engine, params: dict) -> str:
    with Session(engine) as session, session.begin():
        user = User(external_id=f"dispatch-{uuid.uuid4()}")
        session.add(user)
        session.flush()
        job, _ = jobs.create_job(session, user, "dispatch.unit", params)
        return job.id


def test_a_due_job_is_sent_to_n8n_and_ends_dispatched(published, engine, n8n):
    job_id = pending_job(engine, {"topic": "unit"})
    message = send.run(job_id=job_id)
    [received] = n8n.for_job(job_id)
    assert received.path == "/webhook/ai-job" and received.signature_ok
    assert (received.payload["job_type"], received.payload["params"]) == ("dispatch.unit", {"topic": "unit"})
    with engine.connect() as connection:
        assert connection.scalar(select(Job.status).where(Job.id == job_id)) == "dispatched"
    assert message == "attempt 1: accepted (HTTP 200)" and published == []
    assert send.run(job_id=job_id) == "not due"  # dispatched: never sent twice
    assert len(n8n.for_job(job_id)) == 1


def test_an_answer_naming_the_senders_own_id_merges_its_early_callbacks_job(published, engine, n8n):
    own_id = f"backend-{uuid.uuid4()}"
    body = json.dumps({"job_id": own_id, "status": "running", "progress": 40}).encode()
    with engine.begin() as connection:
        [early] = deliveries.record_many(
            connection, [deliveries.Incoming(HOOK.name, f"early-{uuid.uuid4()}", own_id, "running", body, {})])
    run_task([early.pk])  # the callback that arrived first auto-creates a job under the sender's id
    with engine.connect() as connection:
        assert connection.scalar(select(Job.source).where(Job.id == own_id)) == "callback"
        assert connection.scalar(select(Delivery.applied_at).where(Delivery.id == early.pk)) is not None
    published.clear()

    job_id = pending_job(engine, {"answer_id": own_id})
    send.run(job_id=job_id)
    with engine.connect() as connection:
        assert connection.scalar(select(Job.id).where(Job.id == own_id)) is None  # merged away
        job = connection.execute(select(Job.status, Job.external_id).where(Job.id == job_id)).one()
    assert tuple(job) == ("dispatched", own_id)
    # Published once the merge was committed: another connection already saw the delivery unapplied.
    assert published == [(APPLY_DELIVERIES, {"delivery_pks": [early.pk]}, {early.pk: None})]
