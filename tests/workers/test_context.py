"""workers.context.transaction: the one way a task owns a session. What a task enqueues is
published once its transaction is committed (the work is visible to whoever the message
reaches), and never when the work rolls back."""

import uuid

import pytest
from sqlalchemy import select

from shared import deliveries, sweeps
from shared.models import Heartbeat
from shared.queue import APPLY_DELIVERIES, DISPATCH_JOB
from workers import context


@pytest.fixture
def published(monkeypatch, engine):
    """The messages the tasks publish, each with whether its work was committed by then, as
    another connection (the worker the message reaches) sees it."""
    seen = []

    def enqueue(task_name, **kwargs):
        with engine.connect() as other:
            visible = other.scalar(select(Heartbeat.name).where(Heartbeat.name == kwargs.get("job_id")))
        seen.append((task_name, kwargs, visible is not None))
        return True

    monkeypatch.setattr(context, "enqueue", enqueue)
    return seen


def test_follow_ups_are_published_after_the_commit_that_makes_them_valid(published):
    name = f"work-{uuid.uuid4()}"
    with context.transaction() as work:
        sweeps.beat(work.session, name)  # the work a follow-up depends on
        work.enqueue(DISPATCH_JOB, job_id=name)
        assert published == []  # nothing leaves before the commit
    assert published == [(DISPATCH_JOB, {"job_id": name}, True)]


def test_nothing_is_published_when_the_work_rolls_back(published, engine):
    name = f"work-{uuid.uuid4()}"
    with pytest.raises(RuntimeError):
        with context.transaction() as work:
            sweeps.beat(work.session, name)
            work.enqueue(DISPATCH_JOB, job_id=name)
            raise RuntimeError("the work failed")
    assert published == []
    with engine.connect() as other:
        assert other.scalar(select(Heartbeat.name).where(Heartbeat.name == name)) is None


def test_deliveries_are_enqueued_a_batch_per_message(published):
    pks = list(range(1, 2 * deliveries.BATCH + 2))
    with context.transaction() as work:
        work.enqueue_deliveries(pks)
        work.enqueue_deliveries([])
    assert [kwargs["delivery_pks"] for _, kwargs, _ in published] == [
        pks[:deliveries.BATCH], pks[deliveries.BATCH:2 * deliveries.BATCH], pks[2 * deliveries.BATCH:]
    ]
    assert {task_name for task_name, _, _ in published} == {APPLY_DELIVERIES}
