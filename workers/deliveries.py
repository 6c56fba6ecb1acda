"""Task: apply one recorded delivery to its job."""

from __future__ import annotations

import logging

from shared import deliveries
from shared.queue import APPLY_DELIVERY, celery_app
from workers.context import settings, transaction

log = logging.getLogger(__name__)


@celery_app.task(name=APPLY_DELIVERY)
def apply(*, delivery_pk: int) -> str:
    """Apply delivery `delivery_pk` exactly once (the database decides, not the broker)."""
    with transaction() as session:
        attempt = deliveries.begin_attempt(session, delivery_pk, settings().max_delivery_attempts)
    if attempt is None:
        return "already applied or given up"
    try:
        with transaction() as session:
            outcome = deliveries.apply(session, delivery_pk)
    except Exception as exc:
        with transaction() as session:
            deliveries.record_failure(session, delivery_pk, f"{type(exc).__name__}: {exc}")
        log.exception("delivery %s attempt %s failed; the sweep will retry it", delivery_pk, attempt)
        raise
    log.info("delivery %s applied: %s", delivery_pk, outcome)
    return outcome
