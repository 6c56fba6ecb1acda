"""Beat's sweeps have their own queue, which the worker consumes beside the deliveries'."""

from shared.queue import APPLY_DELIVERIES, DISPATCH_JOB, celery_app
from celeryconfig import beat_schedule


def queue_of(task_name: str) -> str:
    return celery_app.amqp.router.route({}, task_name)["queue"].name


def test_sweeps_do_not_queue_behind_deliveries():
    assert {queue_of(entry["task"]) for entry in beat_schedule.values()} == {"sweeps"}
    assert queue_of(APPLY_DELIVERIES) == queue_of(DISPATCH_JOB) == "celery"


def test_a_worker_without_q_consumes_both_queues():
    # The Procfile's worker names no -Q: it consumes every queue in task_queues.
    assert set(celery_app.amqp.queues) == {"celery", "sweeps"}
