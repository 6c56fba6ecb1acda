"""Holding and watching the test database from outside."""

import time
from contextlib import contextmanager

from sqlalchemy import text


def insert_waiting(engine, timeout: float = 10):
    """Until a backend of this database waits for a lock (an INSERT behind LOCK TABLE)."""
    deadline = time.monotonic() + timeout
    with engine.connect() as connection:
        while True:
            waiting = connection.scalar(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ))
            connection.rollback()  # pg_stat_activity is read once per transaction
            if waiting:
                return
            assert time.monotonic() < deadline, "no INSERT ever waited for the lock"
            time.sleep(0.01)


@contextmanager
def writes_held(engine):
    """Hold the deliveries table locked: the writer's INSERT waits until the block ends."""
    with engine.connect() as connection:
        with connection.begin():
            connection.execute(text("LOCK TABLE deliveries IN EXCLUSIVE MODE"))
            yield
