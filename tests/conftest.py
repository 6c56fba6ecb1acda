"""Fixtures: a private PostgreSQL database and Redis db index per run, real processes.

The environment is set here, before any project module is imported, because Celery's
configuration (celeryconfig) is read from it once per process.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers.env import (  # noqa: E402  (sets the environment first)
    DB_NAME, N8N_API_KEY, N8N_OLD_SECRET, N8N_SECRET, PG_ADMIN_URL, TEST_DATABASE_URL, TEST_REDIS_URL,
    WEBHOOK_SECRET,
)

from helpers import n8n_standin  # noqa: E402
from helpers.postgres import fresh_database, migrate  # noqa: E402
from helpers.report import Reliability  # noqa: E402

RELIABILITY = Reliability()
REPORT_PATH = ROOT / "var" / "reliability.json"


@pytest.fixture(scope="session")
def reliability() -> Reliability:
    """Where hostile-input and fault tests record their figures (README quotes them)."""
    return RELIABILITY


def pytest_terminal_summary(terminalreporter):
    if RELIABILITY.hostile or RELIABILITY.faults:
        terminalreporter.section("reliability figures")
        for line in RELIABILITY.lines():
            terminalreporter.write_line(line)
        RELIABILITY.write(REPORT_PATH)
        terminalreporter.write_line(f"written to {REPORT_PATH}")


@pytest.fixture(scope="session")
def database_url():
    """A fresh PostgreSQL database for this run, migrated with Alembic, dropped after."""
    with fresh_database(PG_ADMIN_URL, DB_NAME) as url:
        assert url == TEST_DATABASE_URL
        yield migrate(url)


@pytest.fixture(scope="module")
def sqlite_engine(tmp_path_factory):
    """The embedded default's database (SQLite), migrated with Alembic, for one test module."""
    from alembic import command
    from alembic.config import Config

    from shared.db import make_engine

    url = f"sqlite:///{tmp_path_factory.mktemp('sqlite')}/bridge.db"
    config = Config(str(ROOT / "shared/migrations/alembic.ini"))
    config.attributes.update(database_url=url, configure_logger=False)
    command.upgrade(config, "head")
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def redis_client():
    import redis

    client = redis.Redis.from_url(TEST_REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture(scope="session")
def settings(database_url, n8n):
    """The in-process app's settings: the values helpers/env.py gives the processes through
    the environment, given directly (the stack's processes read that environment)."""
    from shared.settings import Settings

    return Settings(
        database_url=database_url,
        broker_url=TEST_REDIS_URL,
        redis_url=TEST_REDIS_URL,
        public_base_url_is_default=True,  # no PUBLIC_BASE_URL, as for the stack
        n8n_job_webhook=n8n.url("/webhook/ai-job"),
        n8n_webhook_secrets=(N8N_SECRET.encode(), N8N_OLD_SECRET.encode()),
        n8n_api_key=N8N_API_KEY,
        webhook_secrets=(WEBHOOK_SECRET.encode(),),
        retry_schedule=(1, 1, 1),
        sweep_interval=1.0,
        redeliver_after=3,
        max_body_bytes=65536,
        job_stale_after=3600,
    )


@pytest.fixture(scope="session")
def engine(database_url):
    from shared.db import make_engine

    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine):
    """A session whose work is rolled back after the test (savepoints inside)."""
    from sqlalchemy.orm import Session

    with engine.connect() as connection:
        transaction = connection.begin()
        db = Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
        yield db
        db.close()
        transaction.rollback()


@pytest.fixture(scope="session")
def app(settings, redis_client):
    from ingress import create_app

    return create_app(settings)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def n8n():
    """The local HTTP server standing in for n8n."""
    server = n8n_standin.N8nStandIn(secret=N8N_SECRET.encode(), api_key=N8N_API_KEY)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def stack(settings, n8n, redis_client, tmp_path_factory):
    """gunicorn, a Celery worker and beat, as real processes on the test database."""
    from helpers.processes import Stack

    stack = Stack(
        # N8N_BASE_URL: CRM actions are routed to $N8N_BASE_URL/webhook/<route>.
        env={"N8N_JOB_WEBHOOK": n8n.url("/webhook/ai-job"), "N8N_BASE_URL": n8n.url("")},
        workdir=tmp_path_factory.mktemp("stack"),
    )
    stack.start()
    n8n.callback_base = stack.base_url
    yield stack
    stack.stop()


@pytest.fixture
def users(app):
    """Make users with tokens: users("alice") -> (external_id, token); ids unique per test."""
    from shared.accounts import create_token

    made = {}

    def make(name: str, admin: bool = False):
        external_id = f"{name}-{secrets.token_hex(4)}"
        with app.extensions["sessionmaker"].begin() as db:
            token = create_token(db, external_id, admin=admin)
        made[name] = (external_id, token)
        return external_id, token

    return make



@pytest.fixture
def fresh_copy(tmp_path):
    """The repository's files in a temporary directory, as a fresh clone has them (no var/)."""
    from helpers.processes import fresh_copy as copy_into

    return copy_into(tmp_path)
