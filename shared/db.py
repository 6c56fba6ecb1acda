"""Engine and session factory for PostgreSQL and the embedded SQLite default."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import DateTime, Integer, case, cast, create_engine, event, func, literal
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str, **kwargs) -> Engine:
    """Create an engine; SQLite gets WAL, a busy timeout and write-locking transactions."""
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
    return create_engine(
        url,
        connect_args={"connect_timeout": 5, "application_name": "ai-bridge"},
        **kwargs,
    )


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


def autocommit_engine(engine: Engine) -> Engine:
    """An engine for work that is one statement at a time (a batch's upsert, a poll's
    reads): on PostgreSQL each statement commits on its own, one round trip with no BEGIN
    and no COMMIT.

    A pool of its own, in autocommit from connect: switching a shared pool's connection
    into autocommit for one use cost a `SET default_transaction_isolation TO DEFAULT` round
    trip each time it went back (psycopg2 undoing the switch).

    SQLite: the engine itself. Its connections already leave transactions to SQLAlchemy
    (BEGIN IMMEDIATE above), and a second pool on the same file would wait for the first's
    write lock.
    """
    if engine.dialect.name == "sqlite":
        return engine
    return make_engine(engine.url.render_as_string(hide_password=False), isolation_level="AUTOCOMMIT")


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
