"""shared.db: what a statement costs the database on the autocommit engine; bounded waits;
errors that never carry a statement's parameters."""

import time
import uuid

import pytest
from sqlalchemy import text

from helpers import body_of, hmac_headers
from helpers.env import N8N_SECRET


def last_statement(engine, pid: int) -> str:
    """What the backend `pid` last ran (pg_stat_activity keeps it once the backend is idle)."""
    with engine.connect() as connection:
        return connection.scalar(text("SELECT query FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid})


def test_a_recorded_callback_is_one_statement_on_its_connection(app, client, engine):
    body = body_of({"job_id": f"db-{uuid.uuid4()}", "status": "running", "progress": 5})
    assert client.post("/api/n8n/hooks/job-status", data=body, headers=hmac_headers(N8N_SECRET, body)).status_code == 200
    pool = app.extensions["autocommit_engine"]
    with pool.connect() as connection:  # the writer's: the only one this app's pool has opened
        pid = connection.connection.dbapi_connection.info.backend_pid
        assert pool.pool.checkedin() == 0
    # Not BEGIN, COMMIT, nor the SET default_transaction_isolation with which psycopg2 undid a
    # shared pool's switch to autocommit when the connection went back.
    assert last_statement(engine, pid).startswith("WITH batch AS")  # shared.deliveries._RECORD_POSTGRESQL


def test_a_statement_is_bounded_by_the_timeout_and_the_pool_recovers(database_url):
    from sqlalchemy.exc import OperationalError

    from shared.db import autocommit_engine, make_engine

    engine = make_engine(database_url, timeout=1)
    for bounded in (engine, autocommit_engine(engine, 1)):
        try:
            started = time.monotonic()
            with pytest.raises(OperationalError, match="did not answer within 1 s"):
                with bounded.connect() as connection:
                    connection.execute(text("SELECT pg_sleep(30)"))
            assert time.monotonic() - started < 20  # far from the statement's 30 s
            with bounded.connect() as connection:
                assert connection.scalar(text("SELECT 1")) == 1
        finally:
            bounded.dispose()


def test_a_database_error_names_the_statement_not_its_parameters(database_url):
    from sqlalchemy.exc import DBAPIError

    from shared.db import autocommit_engine, make_engine

    engine = make_engine(database_url)
    marker = f"personal-{uuid.uuid4().hex}"
    for each in (engine, autocommit_engine(engine)):
        try:
            with pytest.raises(DBAPIError) as refused:
                with each.connect() as connection:
                    connection.execute(text("SELECT 1 / 0 WHERE CAST(:v AS text) IS NOT NULL"), {"v": marker})
            assert "[SQL: SELECT 1 / 0" in str(refused.value)
            assert marker not in str(refused.value)
        finally:
            each.dispose()
