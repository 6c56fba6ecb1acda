"""Group commit at the ingress: concurrent deliveries share a transaction and a message,
each request is answered only once its own delivery is committed, and a row the database
refuses fails only its own request."""

import threading
import uuid
from contextlib import contextmanager

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import DBAPIError

from ingress.recorder import Recorder, RecordTimeout
from shared.deliveries import Incoming
from shared.db import make_sessionmaker
from shared.models import Delivery
from helpers import Clock, wait_for
from helpers.postgres import insert_waiting, writes_held


def incoming(delivery_id=None, job_id=None) -> Incoming:
    return Incoming("n8n.job_status", delivery_id or f"rec-{uuid.uuid4()}", job_id or f"job-{uuid.uuid4()}",
                    "running", b"{}", {})


class Published(list):
    def __call__(self, pks):
        self.append(pks)

    def wait_for(self, n):
        """The ids published, once `n` deliveries are."""
        wait_for(lambda: sum(len(pks) for pks in self) >= n, timeout=10, interval=0.01,
                 message=f"{n} deliveries published (published: {list(self)})")
        return sorted(pk for pks in self for pk in pks)


@contextmanager
def inserts_counted(engine):
    statements = []

    def count(_conn, _cursor, statement, *_):
        if "INSERT INTO deliveries" in statement:  # the statement that records a batch
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


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
    wait_for(lambda: recorder._queue.qsize() == n, timeout=10, interval=0.005,
             message=f"{n} requests waiting for the writer")


@pytest.fixture
def sessionmaker(engine, database_url):
    return make_sessionmaker(engine)


def test_concurrent_deliveries_share_one_commit_and_one_message(engine, sessionmaker):
    published = Published()
    recorder = Recorder(engine, published)
    recorder.record(incoming())  # the writer and publisher are up
    published.wait_for(1)
    published.clear()
    same = f"rec-{uuid.uuid4()}"
    items = [incoming() for _ in range(10)] + [incoming(delivery_id=same), incoming(delivery_id=same)]
    with inserts_counted(engine) as inserts:
        with writes_held(engine):
            first_threads, first = record_all(recorder, items[:1])
            insert_waiting(engine)  # the writer took the first one alone; its INSERT waits
            other_threads, others = record_all(recorder, items[1:])
            wait_queued(recorder, len(items) - 1)
            assert first == [None], "answered before its delivery was committed"
        for thread in first_threads + other_threads:
            thread.join(10)
    results = first + others

    # The first alone, then the eleven others in one INSERT, which leaves the repeat of an id
    # alone: it is found after, recorded once and counted as a duplicate.
    assert len(inserts) == 2
    assert [r.duplicate for r in results] == [False] * 11 + [True]
    assert results[11].pk == results[10].pk
    assert published.wait_for(11) == sorted(r.pk for r in results[:11])
    # The first batch's delivery waited for the second's: requests were waiting, one message.
    assert len(published) == 1
    with sessionmaker() as db:
        pks = [r.pk for r in results[:11]]
        assert db.scalar(select(func.count()).select_from(Delivery).where(Delivery.id.in_(pks))) == 11
        assert db.get(Delivery, results[10].pk).duplicates == 1


def test_deliveries_committed_within_the_linger_share_one_message(engine):
    published, clock = Published(), Clock()
    recorder = Recorder(engine, published, linger=0.5, clock=clock)
    # One after the other, each answered before the next is sent: three batches of one.
    results = [recorder.record(incoming()) for _ in range(3)]
    clock.advance(0.499)
    results.append(recorder.record(incoming()))  # still within the linger of the first
    assert published == [], "published before the linger ended"

    clock.advance(0.001)
    assert published.wait_for(4) == sorted(r.pk for r in results)
    assert len(published) == 1
    # Nothing is held past the linger when no other delivery comes.
    later = recorder.record(incoming())
    clock.advance(0.5)
    assert published.wait_for(5)[-1] == later.pk
    assert len(published) == 2


def test_a_refused_row_fails_only_its_own_request(engine, sessionmaker):
    published = Published()
    recorder = Recorder(engine, published)
    recorder.record(incoming())
    # A job id longer than the column: PostgreSQL refuses the row (the schemas stop it earlier).
    items = [incoming(), incoming(job_id="x" * 300), incoming()]
    with writes_held(engine):
        ahead, _ = record_all(recorder, [incoming()])
        insert_waiting(engine)  # the writer is busy with the one ahead: the three wait together
        threads, results = record_all(recorder, items)
        wait_queued(recorder, len(items))
    for thread in ahead + threads:
        thread.join(10)

    assert isinstance(results[1], DBAPIError)
    assert results[0].duplicate is False and results[2].duplicate is False
    assert set(published.wait_for(3)) >= {results[0].pk, results[2].pk}


def test_a_database_that_does_not_answer_is_a_timeout_not_a_hang(engine, sessionmaker):
    recorder = Recorder(engine, Published(), timeout=0.5)
    with writes_held(engine):
        with pytest.raises(RecordTimeout):
            recorder.record(incoming())

