"""Configuration: one typed object built from the environment (CONTRACT §1)."""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from shared.ratelimit import Limit

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RETRY_SCHEDULE = (10, 60, 300, 900, 1800, 3600, 7200, 14400)


class ConfigError(ValueError):
    """A variable of the environment cannot be used as given."""


def parse_secrets(value: str | None) -> tuple[bytes, ...]:
    """Split a comma-separated secret list; `whsec_<base64>` decodes to its bytes."""
    secrets = []
    for item in (value or "").split(","):
        item = item.strip()
        if not item:
            continue
        if item.startswith("whsec_"):
            try:
                secrets.append(base64.b64decode(item[len("whsec_"):], validate=True))
            except (binascii.Error, ValueError) as exc:
                raise ConfigError(f"a whsec_ secret is not valid base64: {exc}") from None
        else:
            secrets.append(item.encode("utf-8"))
    return tuple(secrets)


def _secrets(env: dict, name: str) -> tuple[bytes, ...]:
    """parse_secrets of variable `name`, whose name a refusal gives: two variables hold secrets."""
    try:
        return parse_secrets(env.get(name))
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _bool(value: str | None, default: bool) -> bool:
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _int(env: dict, name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _limit(env: dict, name: str, default: Limit) -> Limit | None:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        return Limit.parse(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _schedule(raw: str | None) -> tuple[float, ...]:
    if raw is None or raw.strip() == "":
        return DEFAULT_RETRY_SCHEDULE
    try:
        values = tuple(float(part) for part in raw.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"DISPATCH_RETRY_SCHEDULE must be comma-separated seconds, got {raw!r}") from None
    if any(v < 0 for v in values):
        raise ConfigError("DISPATCH_RETRY_SCHEDULE values must be >= 0")
    return values


@dataclass(frozen=True)
class Settings:
    """Everything the processes read from the environment, typed and defaulted."""

    database_url: str
    broker_url: str
    redis_url: str | None = None
    port: int = 8000
    public_base_url: str = "http://127.0.0.1:8000"
    # True when PUBLIC_BASE_URL is unset and public_base_url is this process's own
    # http://127.0.0.1:$PORT: under a Procfile runner only the web's PORT is the web's, so the
    # workers and doctor use the base URL the web recorded instead (shared.sweeps).
    public_base_url_is_default: bool = False
    n8n_base_url: str | None = None
    n8n_job_webhook: str | None = None
    n8n_webhook_secrets: tuple[bytes, ...] = ()
    n8n_api_key: str | None = None
    webhook_secrets: tuple[bytes, ...] = ()
    webhook_allow_secret_header: bool = True
    tolerance_seconds: int = 300
    max_body_bytes: int = 5 * 1024 * 1024
    action_routes_file: str | None = None
    action_source: str = "crm"
    retry_schedule: tuple[float, ...] = DEFAULT_RETRY_SCHEDULE
    job_stale_after: int = 3600
    # Operational knobs the contract leaves to us (README, Contract notes).
    redeliver_after: int = 30
    sweep_interval: float = 5.0
    dispatch_timeout: float = 10.0
    max_delivery_attempts: int = 10
    # Seconds any one wait for PostgreSQL may last (shared.db.make_engine), and a client
    # has to send a request's whole body (ingress.body.read_body).
    database_timeout: float = 3.0
    body_read_timeout: float = 10.0
    # Abuse limits (kept in Redis; off without REDIS_URL): per API token, per sender endpoint.
    rate_limit_token: Limit | None = Limit(1200, 60)
    rate_limit_sender: Limit | None = Limit(60000, 60)
    var_dir: Path = field(default=PROJECT_ROOT / "var")

    @property
    def callback_url(self) -> str:
        return f"{self.public_base_url.rstrip('/')}/api/n8n/hooks/job-status"

    @property
    def job_dispatch_url(self) -> str | None:
        if self.n8n_job_webhook:
            return self.n8n_job_webhook
        if self.n8n_base_url:
            return f"{self.n8n_base_url.rstrip('/')}/webhook/ai-job"
        return None

    @property
    def embedded(self) -> bool:
        return self.database_url.startswith("sqlite")

    @classmethod
    def from_env(cls, env: dict | None = None) -> "Settings":
        """Build settings from `env` (default: os.environ), applying CONTRACT §1 defaults."""
        env = dict(os.environ if env is None else env)
        var_dir = Path(env.get("VAR_DIR") or PROJECT_ROOT / "var")
        port = _int(env, "PORT", 8000, minimum=1)
        redis_url = env.get("REDIS_URL") or None
        database_url = env.get("DATABASE_URL") or f"sqlite:///{var_dir / 'app.db'}"
        # Heroku-style postgres:// is rejected by SQLAlchemy 2, and a bare postgresql://
        # means psycopg 3 to SQLAlchemy 2.1: both are pinned to psycopg2 here.
        for prefix in ("postgres://", "postgresql://"):
            if database_url.startswith(prefix):
                database_url = "postgresql+psycopg2://" + database_url[len(prefix):]
        broker_url = (
            env.get("CELERY_BROKER_URL")
            or redis_url
            or f"sqla+sqlite:///{var_dir / 'broker.db'}"
        )
        return cls(
            database_url=database_url,
            broker_url=broker_url,
            redis_url=redis_url,
            port=port,
            public_base_url=env.get("PUBLIC_BASE_URL") or f"http://127.0.0.1:{port}",
            public_base_url_is_default=not env.get("PUBLIC_BASE_URL"),
            n8n_base_url=env.get("N8N_BASE_URL") or None,
            n8n_job_webhook=env.get("N8N_JOB_WEBHOOK") or None,
            n8n_webhook_secrets=_secrets(env, "N8N_WEBHOOK_SECRET"),
            n8n_api_key=env.get("N8N_API_KEY") or None,
            webhook_secrets=_secrets(env, "WEBHOOK_SECRET"),
            webhook_allow_secret_header=_bool(env.get("WEBHOOK_ALLOW_SECRET_HEADER"), True),
            tolerance_seconds=_int(env, "WEBHOOK_TOLERANCE_SECONDS", 300),
            max_body_bytes=_int(env, "MAX_BODY_BYTES", 5 * 1024 * 1024, minimum=1),
            action_routes_file=env.get("ACTION_ROUTES_FILE") or None,
            action_source=env.get("ACTION_SOURCE") or "crm",
            retry_schedule=_schedule(env.get("DISPATCH_RETRY_SCHEDULE")),
            job_stale_after=_int(env, "JOB_STALE_AFTER", 3600),
            redeliver_after=_int(env, "REDELIVER_AFTER", 30),
            sweep_interval=float(_int(env, "SWEEP_INTERVAL", 5, minimum=1)),
            dispatch_timeout=float(_int(env, "DISPATCH_TIMEOUT", 10, minimum=1)),
            max_delivery_attempts=_int(env, "MAX_DELIVERY_ATTEMPTS", 10, minimum=1),
            database_timeout=float(_int(env, "DATABASE_TIMEOUT", 3, minimum=1)),
            body_read_timeout=float(_int(env, "BODY_READ_TIMEOUT", 10, minimum=1)),
            rate_limit_token=_limit(env, "RATE_LIMIT_PER_TOKEN", Limit(1200, 60)),
            rate_limit_sender=_limit(env, "RATE_LIMIT_PER_SENDER", Limit(60000, 60)),
            var_dir=var_dir,
        )


@cache
def current() -> Settings:
    """This process's settings, built from its environment on first use: the one object that
    Celery's configuration, the tasks and the Flask app (create_app() without settings) read."""
    return Settings.from_env()
