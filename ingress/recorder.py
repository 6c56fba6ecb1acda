"""Group commit: the deliveries of concurrent requests share one INSERT and one message.

Each request thread hands its verified delivery to the process's writer thread and waits.
The writer takes everything that is waiting (up to `deliveries.BATCH`), records it in one
statement on an autocommit connection (one round trip: no BEGIN, no COMMIT) and wakes the
requests with their answers. No request waits for a timer: alone, a delivery is written at
once; under load the requests that arrive while a batch is being written make up the next
one. A request is answered only once its delivery is committed (CONTRACT §2).

The new deliveries are published as one task once the message is full or PUBLISH_LINGER
after the first of them was committed (a producer's linger, as Kafka's `linger.ms`): a
message costs a worker CPU whatever it carries (Celery's receipt, events and ack), so
deliveries close in time share one. The linger adds at most its 25 ms to a delivery's way
to a worker, never to its sender's answer.

Round trips matter more than their milliseconds: after each one the writer waits for its
turn behind the requests being handled, hence one statement per batch.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from shared import deliveries
from shared.deliveries import Incoming, Recorded
from shared.queue import APPLY_DELIVERIES, enqueue

log = logging.getLogger(__name__)

# Seconds the writer may hold committed deliveries for more to share their message.
PUBLISH_LINGER = 0.025


class RecordTimeout(Exception):
    """The writer did not get to a delivery in time (a database that hangs)."""


class _Pending:
    __slots__ = ("incoming", "done", "recorded", "error")

    def __init__(self, incoming: Incoming):
        self.incoming = incoming
        self.done = threading.Event()
        self.recorded: Recorded | None = None
        self.error: BaseException | None = None


class Recorder:
    def __init__(
        self,
        engine: Engine,
        publish: Callable[[list[int]], object] = lambda pks: enqueue(APPLY_DELIVERIES, delivery_pks=pks),
        timeout: float = 10.0,
        linger: float = PUBLISH_LINGER,
        clock: Callable[[], float] = time.monotonic,
    ):
        # The app's autocommit engine: the one statement of a batch is its own transaction.
        self._engine = engine
        self._publish = publish
        self._timeout = timeout
        self._linger = linger
        self._clock = clock
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._queue: queue.SimpleQueue[_Pending] = queue.SimpleQueue()

    def record(self, incoming: Incoming) -> Recorded:
        """Record one delivery (committed when this returns); raises what the database raised."""
        pending = _Pending(incoming)
        self._writer_queue().put(pending)
        if not pending.done.wait(self._timeout):
            raise RecordTimeout(f"the database did not record the delivery within {self._timeout:g} s")
        if pending.error is not None:
            raise pending.error
        return pending.recorded

    def _writer_queue(self) -> queue.SimpleQueue[_Pending]:
        # One writer per process, started in the process that uses it (gunicorn forks workers).
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._queue = queue.SimpleQueue()
                    threading.Thread(target=self._run, args=(self._queue,), name="recorder", daemon=True).start()
                    self._pid = os.getpid()
        return self._queue

    def _run(self, waiting: queue.SimpleQueue[_Pending]) -> None:
        unpublished: list[int] = []
        due = 0.0  # when the first of `unpublished` was committed, plus the linger
        while True:
            try:
                first = waiting.get(timeout=max(0.0, due - self._clock())) if unpublished else waiting.get()
            except queue.Empty:
                if self._clock() >= due:  # the clock decides, not how long the wait took
                    self._publish_all(unpublished)
                    unpublished = []
                continue
            batch = [first]
            while len(batch) < deliveries.BATCH:
                try:
                    batch.append(waiting.get_nowait())
                except queue.Empty:
                    break
            try:
                new = self._write(batch)
            except BaseException as exc:  # never leave a request waiting, never let the writer die
                log.exception("recording a batch of %d deliveries failed", len(batch))
                for pending in batch:
                    if not pending.done.is_set():
                        pending.error = exc
                        pending.done.set()
                continue
            if new and not unpublished:
                due = self._clock() + self._linger
            unpublished += new
            if len(unpublished) >= deliveries.BATCH or (unpublished and self._clock() >= due):
                self._publish_all(unpublished)
                unpublished = []

    def _publish_all(self, pks: list[int]) -> None:
        # Only once committed; a broker that is down costs a delay (the sweep), not the deliveries.
        for start in range(0, len(pks), deliveries.BATCH):
            try:
                self._publish(pks[start:start + deliveries.BATCH])
            except Exception:  # enqueue() logs and swallows its own; this is for any other publisher
                log.exception("publishing deliveries %s failed; the sweep enqueues them", pks)

    def _write(self, batch: list[_Pending]) -> list[int]:
        """Record a batch and answer its requests; the ids of the new deliveries."""
        started = time.perf_counter()
        try:
            with self._engine.begin() as connection:
                recorded = deliveries.record_many(connection, [pending.incoming for pending in batch])
        except DBAPIError as exc:
            if len(batch) > 1 and not isinstance(exc, OperationalError):
                # A row the database refused must not fail the requests it was batched with.
                log.warning("batch of %d refused (%s); recording one by one", len(batch), type(exc).__name__)
                new = []
                for pending in batch:
                    try:
                        new += self._write([pending])
                    except DBAPIError as refused:
                        pending.error = refused
                        pending.done.set()
                return new
            raise
        for pending, result in zip(batch, recorded):
            pending.recorded = result
            pending.done.set()
        new = [result.pk for result in recorded if not result.duplicate]
        log.info("recorded %d deliveries (%d new, %d duplicates) in %.1f ms", len(batch), len(new),
                 len(batch) - len(new), (time.perf_counter() - started) * 1000)
        return new
