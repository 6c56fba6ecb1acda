"""ingress/gunicorn_conf.py, read in-process: its bind, workers and connections come from the
environment, and `when_ready` records the web's base URL for workers without PUBLIC_BASE_URL.
The real gunicorn is tested in tests/ingress/test_gunicorn.py."""

from __future__ import annotations

import importlib

import pytest
from sqlalchemy.orm import Session

import shared.settings
from shared.settings import Settings
from shared.sweeps import web_base_url


@pytest.fixture
def conf(monkeypatch):
    """The module as gunicorn reads it, re-read under the test's environment."""
    module = importlib.import_module("ingress.gunicorn_conf")

    def read(**env):
        for name in ("PORT", "WEB_CONCURRENCY", "WEB_CONNECTIONS"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return importlib.reload(module)

    yield read
    monkeypatch.undo()
    importlib.reload(module)


def test_port_concurrency_and_connections_come_from_the_environment(conf):
    read = conf(PORT="5123", WEB_CONCURRENCY="4", WEB_CONNECTIONS="250")
    assert (read.bind, read.workers, read.worker_connections) == ("0.0.0.0:5123", 4, 250)


def test_without_them_the_defaults_apply(conf):
    read = conf()
    assert (read.bind, read.workers, read.worker_connections) == ("0.0.0.0:8000", 2, 1000)


class Server:
    """What when_ready uses of gunicorn's arbiter: its log."""

    def __init__(self):
        self.lines = []
        self.log = self

    def info(self, message, *args):
        self.lines.append(("info", message % args))

    def warning(self, message, *args):
        self.lines.append(("warning", message % args))


def test_when_ready_records_the_webs_base_url_for_the_workers(conf, sqlite_engine, monkeypatch, tmp_path):
    settings = Settings(database_url=sqlite_engine.url.render_as_string(hide_password=False),
                        broker_url="memory://", public_base_url="http://web.test:5123", var_dir=tmp_path)
    monkeypatch.setattr(shared.settings, "current", lambda: settings)
    server = Server()
    conf().when_ready(server)
    with Session(sqlite_engine) as session:
        assert web_base_url(session) == "http://web.test:5123"
    assert server.lines == [("info", "recorded http://web.test:5123 as this web's base URL (heartbeats row 'web')")]


def test_when_ready_without_a_database_warns_and_the_web_serves_all_the_same(conf, monkeypatch, tmp_path):
    settings = Settings(database_url=f"sqlite:///{tmp_path}/missing/no-tables.db", broker_url="memory://",
                        var_dir=tmp_path)
    monkeypatch.setattr(shared.settings, "current", lambda: settings)
    server = Server()
    conf().when_ready(server)
    [(level, line)] = server.lines
    assert level == "warning" and "set PUBLIC_BASE_URL" in line
