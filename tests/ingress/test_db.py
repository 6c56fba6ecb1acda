"""ingress/db.py: reads go through the session's own connection on SQLite (a second one
would wait for the request's write lock) and through a separate autocommit connection on
PostgreSQL; both are closed when the request ends."""

from __future__ import annotations

from flask import g
from sqlalchemy import text

from ingress import create_app
from ingress.db import close_session, reader, session
from shared.settings import Settings

INSERT = text("INSERT INTO users (external_id, is_admin, created_at) VALUES (:external_id, false, '2026-01-01')")
COUNT = text("SELECT count(*) FROM users WHERE external_id = :external_id")


def test_on_sqlite_the_reader_is_the_sessions_own_connection(sqlite_engine, tmp_path):
    app = create_app(Settings(database_url=sqlite_engine.url.render_as_string(hide_password=False),
                              broker_url="memory://", var_dir=tmp_path))
    with app.app_context():
        db = session()
        db.execute(INSERT, {"external_id": "db-sqlite"})
        connection = reader()
        assert connection is db.connection()
        assert connection.scalar(COUNT, {"external_id": "db-sqlite"}) == 1  # the request's own write
    # The request's session was closed, its uncommitted write rolled back with it.
    with sqlite_engine.connect() as other:
        assert other.scalar(COUNT, {"external_id": "db-sqlite"}) == 0


def test_on_postgresql_the_reader_is_a_separate_autocommit_connection_closed_at_the_end(app):
    with app.app_context():
        db = session()
        connection = reader()
        assert reader() is connection  # one per request
        db.execute(INSERT, {"external_id": "db-postgresql"})
        assert connection.scalar(COUNT, {"external_id": "db-postgresql"}) == 0  # not the session's transaction
        assert connection.connection.dbapi_connection.autocommit is True
    assert connection.closed and not db.in_transaction()


def test_close_session_with_nothing_opened_does_nothing(app):
    with app.app_context():
        close_session()
        assert "db_session" not in g and "db_reader" not in g
