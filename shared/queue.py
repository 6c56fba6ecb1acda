"""The Celery app both sides share, and bounded enqueueing by task name."""

from __future__ import annotations

import logging
import time

from celery import Celery

log = logging.getLogger(__name__)

celery_app = Celery("ai_bridge")
celery_app.config_from_object("celeryconfig")

APPLY_DELIVERIES = "workers.deliveries.apply"
DISPATCH_JOB = "workers.dispatch.send"

# After a failed publish, this process stops trying for a while: a dead broker costs each
# publish seconds of connection attempts, and the sweeps enqueue the work anyway.
BROKER_BACKOFF_SECONDS = 5.0
_broker_down_until = 0.0


def enqueue(task_name: str, **kwargs) -> bool:
    """Publish a task by name; False (logged) when the broker cannot take it now.

    Callers enqueue only what is already committed to the database, so a False here loses
    nothing: the beat sweeps pick it up (CONTRACT §7).
    """
    global _broker_down_until
    if time.monotonic() < _broker_down_until:
        return False
    try:
        # Our kwargs are ids: their plain repr is what Flower shows, without Celery's
        # saferepr walk (a tenth of a publish's CPU).
        celery_app.send_task(task_name, kwargs=kwargs, retry=False, argsrepr="()", kwargsrepr=repr(kwargs))
        return True
    except Exception as exc:  # kombu raises many types for a dead broker
        _broker_down_until = time.monotonic() + BROKER_BACKOFF_SECONDS
        log.warning(
            "broker unavailable (%s); %s %s and the next %g s of enqueues are left for the sweep",
            exc, task_name, kwargs, BROKER_BACKOFF_SECONDS,
        )
        return False
