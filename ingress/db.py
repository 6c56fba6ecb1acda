"""The request's database session, and its autocommit connection for reads."""

from __future__ import annotations

from flask import current_app, g
from sqlalchemy import Connection
from sqlalchemy.orm import Session


def session() -> Session:
    if "db_session" not in g:
        g.db_session = current_app.extensions["sessionmaker"]()
    return g.db_session


def reader() -> Connection:
    """A connection in autocommit, for requests that only read: each statement is its one
    round trip (no BEGIN, no ROLLBACK), which is most of what a frontend's poll costs.

    On SQLite (the embedded default), the session's own connection: every transaction there
    takes the write lock, and a second connection would wait for the request's first.
    """
    engine = current_app.extensions["autocommit_engine"]
    if engine.dialect.name == "sqlite":
        return session().connection()
    if "db_reader" not in g:
        g.db_reader = engine.connect()
    return g.db_reader


def close_session(_exc=None) -> None:
    db_session = g.pop("db_session", None)
    if db_session is not None:
        db_session.close()
    connection = g.pop("db_reader", None)
    if connection is not None:
        connection.close()
