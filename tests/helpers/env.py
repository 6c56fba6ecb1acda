"""The test run's environment: a private database name, a Redis db index, test secrets.

Imported once (by conftest, before any project module) so every test sees the same values.
"""

import os
import secrets

PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
DB_NAME = f"bridge_test_{os.getpid()}_{secrets.token_hex(3)}"
TEST_DATABASE_URL = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + DB_NAME
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
N8N_SECRET = "n8n-test-secret-" + secrets.token_hex(8)
N8N_OLD_SECRET = "n8n-previous-secret"
WEBHOOK_SECRET = "backend-test-secret-" + secrets.token_hex(8)
N8N_API_KEY = "n8n-api-key-" + secrets.token_hex(4)

for name in list(os.environ):
    if name in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"} or name.startswith(("N8N_", "WEBHOOK_")):
        del os.environ[name]
os.environ.update(
    DATABASE_URL=TEST_DATABASE_URL,
    REDIS_URL=TEST_REDIS_URL,
    N8N_WEBHOOK_SECRET=f"{N8N_SECRET},{N8N_OLD_SECRET}",
    WEBHOOK_SECRET=WEBHOOK_SECRET,
    N8N_API_KEY=N8N_API_KEY,
    DISPATCH_RETRY_SCHEDULE="1,1,1",
    SWEEP_INTERVAL="1",
    REDELIVER_AFTER="3",
    MAX_BODY_BYTES="65536",
    JOB_STALE_AFTER="3600",
)

