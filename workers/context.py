"""What a worker process holds: settings, the engine and an HTTP session, made once."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterator

import requests
from celery.signals import worker_process_init
from sqlalchemy.orm import Session

from shared import deliveries, sweeps
from shared.db import make_engine, make_sessionmaker
from shared.queue import APPLY_DELIVERIES, enqueue
from shared.settings import Settings, current

# How long a worker keeps the base URL the web recorded: a web restarted on another port
# is followed within this delay, at one primary-key read per period.
WEB_BASE_URL_TTL = 30.0
_web_base_url: tuple[float, str] | None = None  # (read at, monotonic; the URL)


# The tasks' settings: the process's one object, the one celeryconfig was read from.
settings = current


def callback_settings() -> Settings:
    """settings() whose callback URL reaches the web (shared.sweeps.reachable_settings)."""
    global _web_base_url
    if not settings().public_base_url_is_default:
        return settings()
    if _web_base_url is None or time.monotonic() - _web_base_url[0] > WEB_BASE_URL_TTL:
        with transaction() as work:
            recorded = sweeps.web_base_url(work.session)
        # Not found is not kept: the web may be starting, and its row appears any moment.
        _web_base_url = (time.monotonic(), recorded) if recorded else None
    return sweeps.reachable_settings(settings(), _web_base_url[1] if _web_base_url else None)


@lru_cache(maxsize=1)
def _sessionmaker():
    return make_sessionmaker(make_engine(settings().database_url, settings().database_timeout))


@lru_cache(maxsize=1)
def http() -> requests.Session:
    return requests.Session()


@dataclass
class Transaction:
    """A task's session in one transaction, and the tasks it publishes once committed."""

    session: Session
    followups: list[tuple[str, dict]] = field(default_factory=list)

    def enqueue(self, task_name: str, **kwargs) -> None:
        """Publish `task_name` after the commit that makes it valid; never if the work rolls back."""
        self.followups.append((task_name, kwargs))

    def enqueue_deliveries(self, pks: list[int]) -> None:
        """Apply these deliveries after the commit, a message per batch."""
        for start in range(0, len(pks), deliveries.BATCH):
            self.enqueue(APPLY_DELIVERIES, delivery_pks=pks[start:start + deliveries.BATCH])


@contextmanager
def transaction() -> Iterator[Transaction]:
    """The one way a task owns a session: committed on success, rolled back on error, and
    what it enqueued published only after the commit (a broker that cannot take it loses
    nothing: the sweeps find the work in the database)."""
    with _sessionmaker().begin() as session:
        work = Transaction(session)
        yield work
    for task_name, kwargs in work.followups:
        enqueue(task_name, **kwargs)


@worker_process_init.connect
def _after_fork(**_):
    # Connections inherited from the parent across fork must not be shared.
    if _sessionmaker.cache_info().currsize:
        _sessionmaker().kw["bind"].dispose(close=False)
    http.cache_clear()
