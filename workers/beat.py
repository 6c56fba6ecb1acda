"""beat's scheduler (celeryconfig `beat_scheduler`): the schedule in memory, and a heartbeat.

Celery's default scheduler keeps its schedule in a shelve file (`--schedule`), whose
directory must exist before beat starts: on a fresh clone it does not. Every entry here
runs every few seconds and every sweep is safe to run twice, so nothing is worth keeping
across a restart: after one, each sweep simply runs at once.
"""

from __future__ import annotations

import logging
import time

from celery import beat

from shared import sweeps
from workers.context import settings, transaction

log = logging.getLogger(__name__)


class Scheduler(beat.Scheduler):
    """celery.beat.Scheduler, which records its own tick in the heartbeats row "beat".

    The canary (workers.sweeps.canary) shows that beat schedules *and* a worker consumes;
    this row tells the two apart, so /readyz and doctor can name the process that stopped.
    """

    _last_heartbeat = float("-inf")

    def tick(self, *args, **kwargs):
        # One due entry per tick, so ticks come in bursts: one write per sweep interval.
        if time.monotonic() - self._last_heartbeat >= settings().sweep_interval:
            self._last_heartbeat = time.monotonic()
            self._record_heartbeat()
        return super().tick(*args, **kwargs)

    def _record_heartbeat(self) -> None:
        try:
            with transaction() as work:
                sweeps.beat(work.session, sweeps.BEAT)
        except Exception as exc:  # the database may be down or not migrated yet: keep scheduling
            log.warning("beat could not record its heartbeat (%s: %s); retrying next interval",
                        type(exc).__name__, exc)
