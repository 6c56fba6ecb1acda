"""Celery settings: a plain module of lowercase names, loaded by shared.queue with
config_from_object("celeryconfig"), read from the process's one Settings."""

from datetime import timedelta
from pathlib import Path

from kombu import Queue

from shared.settings import current

_settings = current()

broker_url = _settings.broker_url
broker_connection_retry_on_startup = True
# No result backend: job status lives in our tables (celery #8588).
task_ignore_result = True
task_serializer = "json"
accept_content = ["json"]
timezone = "UTC"
enable_utc = True

# A killed worker must not lose the task it held (celery #1628); redeliveries are capped
# in our own code (Delivery.attempts).
task_acks_late = True
task_reject_on_worker_lost = True
task_acks_on_failure = True
task_acks_on_timeout = True
worker_prefetch_multiplier = 1
worker_cancel_long_running_tasks_on_connection_loss = True
task_time_limit = 120
task_soft_time_limit = 90

# Flower: the worker's task events (received, started, succeeded) carry readable names and
# keyword arguments. No task-sent events: each cost the ingress a second publish per request.
worker_send_task_events = True
task_send_sent_event = False

# The ingress must answer fast when the broker is down: one try, short timeouts; the
# delivery is already recorded and the sweep enqueues it later.
task_publish_retry = False
broker_connection_timeout = 2

if broker_url.startswith("redis"):
    broker_transport_options = {
        "visibility_timeout": 300,
        "socket_connect_timeout": 2,
        "socket_timeout": 5,
        "retry_on_timeout": False,
    }
else:
    # sqla+sqlite: every key here is passed to create_engine.
    broker_transport_options = {}

if broker_url.startswith("sqla+sqlite:///"):
    # The embedded broker's file sits under VAR_DIR, which a fresh clone does not have:
    # whichever process starts first (worker, beat, flower) makes it.
    Path(broker_url.removeprefix("sqla+sqlite:///")).parent.mkdir(parents=True, exist_ok=True)

# Beat's sweeps get their own queue, which every worker consumes beside the default one:
# behind a backlog of deliveries they would wait, expire unrun, and the canary would read
# as a stuck worker exactly when the redeliver sweep matters. kombu takes from the two
# queues in turn, so a sweep waits for one task, not the backlog.
task_default_queue = "celery"
task_queues = (Queue("celery"), Queue("sweeps"))
task_routes = {"workers.sweeps.*": {"queue": "sweeps"}}

# The schedule lives in beat's memory (workers/beat.py): no file, no directory to make first.
beat_scheduler = "workers.beat:Scheduler"

_every = _settings.sweep_interval
beat_schedule = {
    "redeliver-unapplied": {
        "task": "workers.sweeps.redeliver",
        "schedule": timedelta(seconds=_every),
        "options": {"expires": _every},
    },
    "dispatch-due": {
        "task": "workers.sweeps.dispatch_due",
        "schedule": timedelta(seconds=_every),
        "options": {"expires": _every},
    },
    "watchdog": {
        "task": "workers.sweeps.watchdog",
        "schedule": timedelta(seconds=max(_every, 30)),
        "options": {"expires": max(_every, 30)},
    },
    "forget-signatures": {
        "task": "workers.sweeps.forget_signatures",
        "schedule": timedelta(seconds=max(_every, 60)),
        "options": {"expires": max(_every, 60)},
    },
    "canary": {
        "task": "workers.sweeps.canary",
        "schedule": timedelta(seconds=_every),
        "options": {"expires": _every},
    },
}
