"""The service's web app with its recorder replaced, for `bench/ab.py`: where the CPU of an
accepted callback goes, part by part (each app runs under the Procfile's gunicorn command).

    "bench.standins:answering()"    a recorder that answers at once: the handler alone
    "bench.standins:handing_off()"  the writer thread, waiting 1 ms per batch instead of writing
    "bench.standins:publishing()"   the same, and the real Celery publish of each batch
    "bench.standins:inserting()"    the real INSERT, no publish
"""

from __future__ import annotations

import time

from flask import Flask

from ingress import create_app
from ingress.recorder import Recorder
from shared.deliveries import Recorded


def _recorded(pending) -> Recorded:
    return Recorded(1, pending.incoming.delivery_id, pending.incoming.job_id, False)


class _Answering:
    def record(self, incoming) -> Recorded:
        return Recorded(1, incoming.delivery_id, incoming.job_id, False)


class _Waiting(Recorder):
    """The writer's hand-offs, with 1 ms of waiting in place of the INSERT."""

    publishes = False

    def _write(self, batch) -> list[int]:
        time.sleep(0.001)  # gevent's sleep under gunicorn: the writer waits as it would on PostgreSQL
        for pending in batch:
            pending.recorded = _recorded(pending)
            pending.done.set()
        return [1] * len(batch) if self.publishes else []


class _Publishing(_Waiting):
    publishes = True


def _with(make) -> Flask:
    app = create_app()
    app.extensions["recorder"] = make(app)
    return app


def answering() -> Flask:
    return _with(lambda app: _Answering())


def handing_off() -> Flask:
    return _with(lambda app: _Waiting(app.extensions["autocommit_engine"]))


def publishing() -> Flask:
    return _with(lambda app: _Publishing(app.extensions["autocommit_engine"]))


def inserting() -> Flask:
    return _with(lambda app: Recorder(app.extensions["autocommit_engine"], publish=lambda pks: None))
