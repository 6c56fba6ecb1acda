"""What a worker process holds: settings, the engine and an HTTP session, made once."""

from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache

import requests
from celery.signals import worker_process_init

from shared.db import make_engine, make_sessionmaker
from shared.settings import Settings


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings.from_env()


@lru_cache(maxsize=1)
def _sessionmaker():
    return make_sessionmaker(make_engine(settings().database_url, settings().database_timeout))


@lru_cache(maxsize=1)
def http() -> requests.Session:
    return requests.Session()


@contextmanager
def transaction():
    """A session inside one transaction: committed on success, rolled back on error."""
    with _sessionmaker().begin() as session:
        yield session


@worker_process_init.connect
def _after_fork(**_):
    # Connections inherited from the parent across fork must not be shared.
    if _sessionmaker.cache_info().currsize:
        _sessionmaker().kw["bind"].dispose(close=False)
    http.cache_clear()
