"""The pipeline baseline: no-op Celery tasks on the service's broker and worker settings.

    celery -A bench.noop_tasks worker --loglevel INFO --events --concurrency 2   (the Procfile's flags)
    python -m bench.noop_tasks enqueue N                                         (N tasks, as the ingress sends them)

Configured from celeryconfig (acks_late, prefetch 1, events, transport options); only the
task differs: it does nothing. Point REDIS_URL at a Redis db the service does not use.
"""

from __future__ import annotations

import sys
import time

from celery import Celery

app = Celery("bench_noop")
app.config_from_object("celeryconfig")
app.conf.beat_schedule = {}

NOOP = "bench.noop"


@app.task(name=NOOP)
def noop(**kwargs) -> None:
    return None


def enqueue(n: int) -> float:
    """Publish n tasks the way shared.queue.enqueue does (send_task by name, kwargs); returns seconds."""
    started = time.monotonic()
    for pk in range(n):
        app.send_task(NOOP, kwargs={"delivery_pk": pk}, retry=False)
    return time.monotonic() - started


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "enqueue":
        raise SystemExit("usage: python -m bench.noop_tasks enqueue N")
    count = int(sys.argv[2])
    seconds = enqueue(count)
    print(f"enqueued {count} in {seconds:.3f} s", flush=True)
