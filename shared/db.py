"""Engine and session factory for PostgreSQL and the embedded SQLite default."""

from __future__ import annotations

import select
import time
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import psycopg2
import psycopg2.extensions
from sqlalchemy import DateTime, Integer, case, cast, create_engine, event, func, literal
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str, timeout: float | None = None, **kwargs) -> Engine:
    """Create an engine; SQLite gets WAL, a busy timeout and write-locking transactions.

    On PostgreSQL, `timeout` bounds every wait for the database: connecting, each
    statement's answer and a connection from the pool end after `timeout` seconds with
    OperationalError (SQLAlchemy then replaces the pool's connections). Without it, only
    connecting is bounded (5 s): for migrations, whose statements may run for minutes.
    """
    # Statements' parameters hold what clients sent (bodies, personal data): an error names
    # the statement, never its values, in every log and traceback.
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        _configure_sqlite(engine)
        return engine
    # No ping before each use (a round trip per request): when PostgreSQL restarts, the
    # first statement on a stale connection fails (503 at the ingress, a retried task in a
    # worker) and SQLAlchemy then replaces every connection of the pool at once.
    kwargs.setdefault("pool_pre_ping", False)
    kwargs.setdefault("pool_recycle", 1800)
    # Room for the requests a web process has in the database at once, and its writer,
    # without closing and reopening connections: an overflow connection is closed when
    # returned, and under load that churn (a backend forked per request) cost more than the
    # requests. Past it, a request waits for a connection (pool_timeout).
    kwargs.setdefault("pool_size", 20)
    kwargs.setdefault("max_overflow", 10)
    connect_args = {"connect_timeout": 5, "application_name": "ai-bridge"}
    if timeout is not None:
        kwargs.setdefault("pool_timeout", timeout)
        connect_args["connection_factory"] = _bounded_connection(timeout)
        psycopg2.extensions.set_wait_callback(_wait)
    return create_engine(url, connect_args=connect_args, **kwargs)


@lru_cache
def _bounded_connection(timeout: float) -> type:
    """A psycopg2 connection class whose waits for the server `_wait` ends after `timeout` s."""
    return type("BoundedConnection", (psycopg2.extensions.connection,), {"wait_timeout": timeout})


def _wait(connection) -> None:
    """psycopg2's wait callback: wait for the server's socket, up to the connection's bound.

    A stopped or unreachable server (SIGSTOP, a black-holed network) still has its kernel
    ACK every packet: TCP keepalives and the server's statement_timeout never fire, and
    without a deadline here a request would wait for ever. With a wait callback libpq
    connects asynchronously and ignores connect_timeout, so connecting is bounded here too.

    `select.poll` is read at each call: under gunicorn's gevent worker it is gevent's, and
    the wait lets the process's other requests run. Raising makes psycopg2 close the
    connection (it cannot know where the protocol stands), so SQLAlchemy sees a disconnect.
    """
    timeout = getattr(connection, "wait_timeout", None)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        state = connection.poll()
        if state == psycopg2.extensions.POLL_OK:
            return
        if state == psycopg2.extensions.POLL_READ:
            events = select.POLLIN
        elif state == psycopg2.extensions.POLL_WRITE:
            events = select.POLLOUT
        else:
            raise psycopg2.OperationalError(f"unexpected psycopg2 poll state {state}")
        poller = select.poll()
        poller.register(connection.fileno(), events)
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic()) * 1000
        if not poller.poll(remaining):
            raise psycopg2.OperationalError(f"the database did not answer within {timeout:g} s")


def _configure_sqlite(engine: Engine) -> None:
    # Web, worker and beat write the same file at once. WAL lets readers go on while one
    # writes; BEGIN IMMEDIATE takes the write lock up front so that a read-then-write
    # transaction waits (busy timeout) instead of failing with SQLITE_BUSY half-way.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # let us emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def autocommit_engine(engine: Engine, timeout: float | None = None) -> Engine:
    """An engine for work that is one statement at a time (a batch's upsert, a poll's
    reads): on PostgreSQL each statement commits on its own, one round trip with no BEGIN
    and no COMMIT.

    A pool of its own, in autocommit from connect: switching a shared pool's connection
    into autocommit for one use cost a `SET default_transaction_isolation TO DEFAULT` round
    trip each time it went back (psycopg2 undoing the switch).

    `timeout` as for make_engine.

    SQLite: the engine itself. Its connections already leave transactions to SQLAlchemy
    (BEGIN IMMEDIATE above), and a second pool on the same file would wait for the first's
    write lock.
    """
    if engine.dialect.name == "sqlite":
        return engine
    return make_engine(engine.url.render_as_string(hide_password=False), timeout, isolation_level="AUTOCOMMIT")


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def dialect(session: Session) -> str:
    return session.get_bind().dialect.name


# The INSERT construct with ON CONFLICT of each backend we run on, by dialect name.
INSERT = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def insert_ignoring_conflict(session: Session, table, values: dict, conflict_columns: list[str]) -> bool:
    """INSERT … ON CONFLICT DO NOTHING: True when the row was inserted (not already there)."""
    stmt = INSERT[dialect(session)](table).values(**values).on_conflict_do_nothing(index_elements=conflict_columns)
    return session.execute(stmt).rowcount == 1


def milliseconds_since(session: Session, column, now: datetime):
    """SQL for the whole milliseconds from a UTC timestamp `column` to `now` (never negative)."""
    if dialect(session) == "sqlite":
        # SQLite keeps naive UTC text (models.UTCDateTime); julianday counts days.
        naive = now.astimezone(timezone.utc).replace(tzinfo=None).isoformat(sep=" ")
        seconds = (func.julianday(naive) - func.julianday(column)) * 86400.0
    else:
        seconds = func.extract("epoch", literal(now, DateTime(timezone=True)) - column)
    milliseconds = cast(seconds * 1000.0, Integer)
    return case((milliseconds < 0, 0), else_=milliseconds)
