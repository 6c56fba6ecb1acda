"""The pipeline's baseline: Celery tasks that do nothing, configured from celeryconfig (acks_late,
prefetch 1, events, transport options) on a Redis db the service does not use. The Procfile's
worker line runs them with `-A bench.noop_tasks`; `python -m bench.noop_tasks N` publishes N."""

from __future__ import annotations

import sys

from celery import Celery

app = Celery("bench_noop")
app.config_from_object("celeryconfig")
app.conf.beat_schedule = {}


@app.task(name="bench.noop")
def noop(**kwargs) -> None:
    return None


if __name__ == "__main__":
    for pk in range(int(sys.argv[1])):
        app.send_task("bench.noop", kwargs={"delivery_pk": pk}, retry=False)
