"""Task: one dispatch attempt of a job to n8n."""

from __future__ import annotations

import logging

from shared import dispatch
from shared.models import utcnow
from shared.queue import DISPATCH_JOB, celery_app
from workers.context import callback_settings, http, transaction

log = logging.getLogger(__name__)


@celery_app.task(name=DISPATCH_JOB)
def send(*, job_id: str) -> str:
    """Send job `job_id` if it is pending and due; record the outcome and the next attempt."""
    settings = callback_settings()
    with transaction() as work:
        job = dispatch.claim(work.session, job_id, utcnow())
        if job is None:
            return "not due"
        work.session.expunge(job)
    # The HTTP call happens outside any transaction: no row lock is held while n8n thinks.
    outcome = dispatch.send(http(), settings, job)
    with transaction() as work:
        recorded = dispatch.record(work.session, settings, job_id, outcome)
        # Callbacks the sender made under its own id before its answer was recorded, now the
        # job's: applied to it in order (the redeliver sweep covers a lost message).
        work.enqueue_deliveries(recorded.redeliver)
    log.info("dispatch of job %s: %s", job_id, recorded.message)
    return recorded.message
