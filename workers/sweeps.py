"""Beat tasks: redeliver unapplied deliveries, send due dispatches, time out silent jobs,
forget the signatures kept against replays once they are stale."""

from __future__ import annotations

import logging

from shared import sweeps
from shared.models import utcnow
from shared.queue import DISPATCH_JOB, celery_app
from workers.context import settings, transaction

log = logging.getLogger(__name__)


@celery_app.task(name="workers.sweeps.redeliver")
def redeliver() -> int:
    """Enqueue again the deliveries recorded but not applied in time."""
    with transaction() as work:
        pks = sweeps.unapplied_deliveries(work.session, settings())
        work.enqueue_deliveries(pks)
    if pks:
        log.warning("redelivered %d unapplied deliveries", len(pks))
    return len(pks)


@celery_app.task(name="workers.sweeps.dispatch_due")
def dispatch_due() -> int:
    """Enqueue the dispatch of every pending job whose attempt is due."""
    with transaction() as work:
        job_ids = sweeps.due_dispatches(work.session)
        for job_id in job_ids:
            work.enqueue(DISPATCH_JOB, job_id=job_id)
    return len(job_ids)


@celery_app.task(name="workers.sweeps.watchdog")
def watchdog() -> int:
    """Fail the jobs n8n never called back about."""
    with transaction() as work:
        job_ids = sweeps.time_out_stale_jobs(work.session, settings())
    if job_ids:
        log.warning("timed out %d silent jobs: %s", len(job_ids), ", ".join(job_ids[:20]))
    return len(job_ids)


@celery_app.task(name="workers.sweeps.forget_signatures")
def forget_signatures() -> int:
    """Delete the signatures kept against replays that the timestamp check now refuses anyway."""
    now = utcnow()
    forgotten = 0
    while True:
        # A transaction per batch: deleting a backlog never holds many rows locked at once.
        with transaction() as work:
            deleted = sweeps.forget_signatures(work.session, settings(), now, sweeps.SIGNATURE_BATCH)
        forgotten += deleted
        if deleted < sweeps.SIGNATURE_BATCH:
            return forgotten


@celery_app.task(name="workers.sweeps.canary")
def canary() -> str:
    """Prove beat schedules and a worker consumes: /readyz and /metrics show its age."""
    with transaction() as work:
        sweeps.beat(work.session, sweeps.CANARY)
    return "ok"
