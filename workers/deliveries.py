"""Task: apply recorded deliveries to their jobs, a batch per message."""

from __future__ import annotations

import logging

from shared import deliveries
from shared.queue import APPLY_DELIVERIES, celery_app
from workers.context import settings, transaction

log = logging.getLogger(__name__)


class DeliveriesFailed(Exception):
    """Some deliveries of a message failed; their errors are kept and the sweep retries them."""


@celery_app.task(name=APPLY_DELIVERIES, bind=True)
def apply(self, *, delivery_pks: list[int] | None = None, delivery_pk: int | None = None) -> str:
    """Apply each delivery exactly once (the database decides, not the broker).

    A batch is applied in one transaction. If that fails (one bad delivery, a deadlock),
    each delivery is applied in its own, so the others are not held back by it.
    `delivery_pk`: the message of one delivery that a web of the previous release enqueues.
    """
    delivery_pks = list(delivery_pks or []) + ([delivery_pk] if delivery_pk is not None else [])
    max_attempts = settings().max_delivery_attempts
    # kombu marks a message that comes back after its worker died (acks_late and
    # reject_on_worker_lost): then each delivery's attempt is counted on its own, committed
    # before the work (attempt_counted), so a delivery that kills its worker every time is
    # given up after MAX_DELIVERY_ATTEMPTS. Otherwise an attempt is counted with its work,
    # or with its error.
    attempt_counted = bool((self.request.delivery_info or {}).get("redelivered"))
    if len(delivery_pks) > 1 and not attempt_counted:
        try:
            with transaction() as work:
                outcomes = deliveries.apply(work.session, delivery_pks, max_attempts)
        except Exception as exc:
            log.warning("batch of %d deliveries failed (%s: %s); applying them one by one",
                        len(delivery_pks), type(exc).__name__, exc)
        else:
            for outcome in outcomes:
                log.info("%s", outcome)
            return f"{len(delivery_pks)} deliveries: applied"
    failed = [pk for pk in delivery_pks if not _apply_one(pk, max_attempts, attempt_counted=attempt_counted)]
    if failed:
        raise DeliveriesFailed(f"deliveries {failed} failed; the sweep will retry them")
    return f"{len(delivery_pks)} deliveries: applied one by one"


def _apply_one(pk: int, max_attempts: int, *, attempt_counted: bool) -> bool:
    """Apply one delivery in its own transaction; False when it (or an earlier one of its job)
    failed. With `attempt_counted`, its attempt is counted first, committed on its own."""
    if attempt_counted:
        with transaction() as work:
            if deliveries.begin_attempt(work.session, pk, max_attempts) is None:
                log.info("delivery %s: already applied or given up", pk)
                return True
    try:
        with transaction() as work:
            outcomes = deliveries.apply(work.session, [pk], max_attempts, attempt_counted=attempt_counted)
    except Exception as exc:
        # An earlier delivery of the same job may be the one that failed: the error and the
        # attempt are its own (not counted yet), and this one waits for it (applied, or given up).
        culprit, cause = (exc.pk, exc.__cause__) if isinstance(exc, deliveries.DeliveryFailed) else (pk, exc)
        with transaction() as work:
            error = f"{type(cause).__name__}: {cause}"
            deliveries.record_failure(work.session, culprit, error, attempt_counted=attempt_counted and culprit == pk)
        if culprit == pk:
            log.exception("delivery %s failed; the sweep will retry it", pk)
        else:
            log.warning("delivery %s waits for delivery %s of the same job, which failed: %s", pk, culprit, cause)
        return False
    for outcome in outcomes:
        log.info("%s", outcome)
    return True
