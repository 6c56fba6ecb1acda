"""The Celery app both sides share, and bounded enqueueing by task name."""

from __future__ import annotations

import logging

from celery import Celery

log = logging.getLogger(__name__)

celery_app = Celery("ai_bridge")
celery_app.config_from_object("celeryconfig")

APPLY_DELIVERY = "workers.deliveries.apply"
DISPATCH_JOB = "workers.dispatch.send"


def enqueue(task_name: str, **kwargs) -> bool:
    """Publish a task by name; False (logged) when the broker cannot take it now.

    Callers enqueue only what is already committed to the database, so a False here loses
    nothing: the beat sweeps pick it up (CONTRACT §7).
    """
    try:
        celery_app.send_task(task_name, kwargs=kwargs, retry=False)
        return True
    except Exception as exc:  # kombu raises many types for a dead broker
        log.warning("enqueue %s %s failed, left for the sweep: %s", task_name, kwargs, exc)
        return False
