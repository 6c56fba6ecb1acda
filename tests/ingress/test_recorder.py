"""Group commit at the ingress: concurrent deliveries share a transaction and a message,
each request is answered only once its own delivery is committed, and a row the database
refuses fails only its own request."""

import threading
import time
import uuid

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from ingress.recorder import Recorder
from shared.deliveries import Incoming
from shared.db import make_sessionmaker
from shared.models import Delivery


def incoming(delivery_id=None, job_id=None) -> Incoming:
    return Incoming("n8n.job_status", delivery_id or f"rec-{uuid.uuid4()}", job_id or f"job-{uuid.uuid4()}",
                    "running", b"{}", {})


class GatedPublish:
    """Publishes nothing; holds the writer inside its first publish until released, so that
    the requests arriving meanwhile are all waiting when it takes the next batch."""

    def __init__(self):
        self.batches: list[list[int]] = []
        self.first = threading.Event()
        self.release = threading.Event()

    def __call__(self, pks):
        self.batches.append(pks)
        if len(self.batches) == 1:
            self.first.set()
            assert self.release.wait(10)


def record_all(recorder, items):
    results = [None] * len(items)

    def one(i):
        try:
            results[i] = recorder.record(items[i])
        except Exception as exc:  # what the request's thread would turn into its answer
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(items))]
    for thread in threads:
        thread.start()
    return threads, results


def wait_queued(recorder, n):
    deadline = time.monotonic() + 10
    while recorder._queue.qsize() < n:
        assert time.monotonic() < deadline, "the requests never reached the writer"
        time.sleep(0.005)


@pytest.fixture
def sessionmaker(engine, database_url):
    return make_sessionmaker(engine)


def test_concurrent_deliveries_share_one_commit_and_one_message(sessionmaker):
    publish = GatedPublish()
    recorder = Recorder(sessionmaker, publish)
    first = recorder.record(incoming())  # answered once committed, before its publish returns
    assert first.duplicate is False

    assert publish.first.wait(10)
    same = f"rec-{uuid.uuid4()}"
    items = [incoming() for _ in range(10)] + [incoming(delivery_id=same), incoming(delivery_id=same)]
    threads, results = record_all(recorder, items)
    wait_queued(recorder, len(items))
    publish.release.set()
    for thread in threads:
        thread.join(10)

    assert publish.batches[0] == [first.pk]
    # All twelve in the second batch; the repeated delivery id is recorded once.
    assert len(publish.batches) == 2 and sorted(publish.batches[1]) == sorted(r.pk for r in results[:11])
    assert [r.duplicate for r in results] == [False] * 11 + [True]
    assert results[11].pk == results[10].pk
    with sessionmaker() as db:
        pks = [r.pk for r in results[:11]]
        assert db.scalar(select(func.count()).select_from(Delivery).where(Delivery.id.in_(pks))) == 11
        assert db.get(Delivery, results[10].pk).duplicates == 1


def test_a_refused_row_fails_only_its_own_request(sessionmaker):
    publish = GatedPublish()
    recorder = Recorder(sessionmaker, publish)
    recorder.record(incoming())
    assert publish.first.wait(10)
    # A job id longer than the column: PostgreSQL refuses the row (the schemas stop it earlier).
    items = [incoming(), incoming(job_id="x" * 300), incoming()]
    threads, results = record_all(recorder, items)
    wait_queued(recorder, len(items))
    publish.release.set()
    for thread in threads:
        thread.join(10)

    assert isinstance(results[1], DBAPIError)
    assert results[0].duplicate is False and results[2].duplicate is False
    assert sorted(pk for batch in publish.batches[1:] for pk in batch) == sorted([results[0].pk, results[2].pk])


def test_a_database_that_does_not_answer_is_a_timeout_not_a_hang(sessionmaker):
    from ingress.recorder import RecordTimeout

    publish = GatedPublish()
    recorder = Recorder(sessionmaker, publish, timeout=0.5)
    recorder.record(incoming())  # the writer is now held in its publish: nothing else is written
    assert publish.first.wait(10)
    with pytest.raises(RecordTimeout):
        recorder.record(incoming())
    publish.release.set()
