"""shared.db: what a statement costs the database on the autocommit engine."""

import uuid

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
    assert last_statement(engine, pid).startswith("INSERT INTO deliveries")
