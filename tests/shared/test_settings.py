"""Settings from the environment (CONTRACT §1)."""

import base64

import pytest

from shared.settings import ConfigError, Settings


def test_embedded_default_without_urls(tmp_path):
    s = Settings.from_env({"VAR_DIR": str(tmp_path)})
    assert s.database_url == f"sqlite:///{tmp_path}/app.db"
    assert s.broker_url == f"sqla+sqlite:///{tmp_path}/broker.db"
    assert s.public_base_url == "http://127.0.0.1:8000"
    assert s.callback_url == "http://127.0.0.1:8000/api/n8n/hooks/job-status"
    assert s.job_dispatch_url is None
    assert s.public_base_url_is_default


def test_urls_and_overrides():
    s = Settings.from_env({
        "DATABASE_URL": "postgres://u@h/db", "REDIS_URL": "redis://r:6379/0", "PORT": "9000",
        "N8N_BASE_URL": "https://n8n.example.com/",
    })
    assert s.database_url == "postgresql+psycopg2://u@h/db"
    assert s.broker_url == "redis://r:6379/0"
    assert s.public_base_url == "http://127.0.0.1:9000"
    assert s.job_dispatch_url == "https://n8n.example.com/webhook/ai-job"
    assert Settings.from_env({"REDIS_URL": "redis://r", "CELERY_BROKER_URL": "amqp://x"}).broker_url == "amqp://x"


def test_secrets_rotation_and_whsec():
    raw = b"\x00\x01binary-secret"
    s = Settings.from_env({"N8N_WEBHOOK_SECRET": f"first, whsec_{base64.b64encode(raw).decode()}"})
    assert s.n8n_webhook_secrets == (b"first", raw)


@pytest.mark.parametrize("env, message", [
    ({"PORT": "eighty"}, "PORT must be an integer, got 'eighty'"),
    ({"PORT": "0"}, "PORT must be >= 1, got 0"),
    ({"DISPATCH_RETRY_SCHEDULE": "10,soon"},
     "DISPATCH_RETRY_SCHEDULE must be comma-separated seconds, got '10,soon'"),
    ({"DISPATCH_RETRY_SCHEDULE": "10,-1"}, "DISPATCH_RETRY_SCHEDULE values must be >= 0"),
    ({"N8N_WEBHOOK_SECRET": "ok, whsec_%%%"},
     "N8N_WEBHOOK_SECRET: a whsec_ secret is not valid base64: Only base64 data is allowed"),
    ({"WEBHOOK_SECRET": "whsec_%%%"},
     "WEBHOOK_SECRET: a whsec_ secret is not valid base64: Only base64 data is allowed"),
])
def test_bad_values_are_named(env, message):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert str(caught.value) == message


def test_the_callback_url_reaches_the_web():
    from shared.sweeps import reachable_settings

    worker = Settings.from_env({"PORT": "5100"})  # honcho's PORT for the second process type
    assert reachable_settings(worker, "http://127.0.0.1:5000").callback_url == (
        "http://127.0.0.1:5000/api/n8n/hooks/job-status")
    assert reachable_settings(worker, None).public_base_url == "http://127.0.0.1:5100"
    pinned = Settings.from_env({"PORT": "5100", "PUBLIC_BASE_URL": "https://bridge.example.com"})
    assert not pinned.public_base_url_is_default
    assert reachable_settings(pinned, "http://127.0.0.1:5000").public_base_url == "https://bridge.example.com"


def test_the_flask_app_and_celery_read_one_settings_per_process(database_url):
    # A variable read differently by two objects (Celery's broker, the app's database) would
    # split one process in two; built once, every part sees the same values.
    import celeryconfig
    from ingress import create_app
    from shared.settings import current
    from workers import context

    assert create_app().extensions["settings"] is current()
    assert celeryconfig._settings is current() and context.settings() is current()
