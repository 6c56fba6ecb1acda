"""shared/queue.py enqueue: a broker that cannot take a task costs a False, logged, and a backoff
in which no publish is tried; after it, publishing resumes. The clock is injected."""

import json
import logging
import secrets
from types import SimpleNamespace

import pytest
from celery import Celery

from helpers import Clock
from helpers.env import TEST_REDIS_URL
from helpers.processes import free_port
from shared import queue


@pytest.fixture
def clock(monkeypatch):
    clock = Clock(now=500.0)
    monkeypatch.setattr(queue, "time", SimpleNamespace(monotonic=clock))
    monkeypatch.setattr(queue, "_broker_down_until", 0.0)
    return clock


def app_with_broker(url: str, default_queue: str = "celery") -> Celery:
    """An app configured as both sides' (celeryconfig), publishing to `url`."""
    app = Celery("queue-test", set_as_current=False)
    app.config_from_object("celeryconfig")
    app.conf.update(broker_url=url, task_default_queue=default_queue, task_queues=None)
    return app


@pytest.fixture
def own_queue(redis_client):
    """A queue no worker of the run consumes: what is published there stays to be read."""
    name = f"unit-{secrets.token_hex(4)}"
    yield name
    redis_client.delete(name)


def test_an_unreachable_broker_is_false_and_logged(clock, monkeypatch, caplog):
    monkeypatch.setattr(queue, "celery_app", app_with_broker(f"redis://127.0.0.1:{free_port()}/0"))
    with caplog.at_level(logging.WARNING, logger="shared.queue"):
        assert queue.enqueue(queue.DISPATCH_JOB, job_id="job-1") is False
    (message,) = caplog.messages
    assert message.startswith("broker unavailable (")
    assert message.endswith(
        "workers.dispatch.send {'job_id': 'job-1'} and the next 5 s of enqueues are left for the sweep")


def test_within_the_backoff_nothing_is_published_and_after_it_publishing_resumes(
        clock, monkeypatch, redis_client, own_queue):
    monkeypatch.setattr(queue, "celery_app", app_with_broker(f"redis://127.0.0.1:{free_port()}/0"))
    assert queue.enqueue(queue.DISPATCH_JOB, job_id="lost") is False
    # The broker is back, but this process does not try it until the backoff has passed.
    monkeypatch.setattr(queue, "celery_app", app_with_broker(TEST_REDIS_URL, own_queue))
    clock.now += queue.BROKER_BACKOFF_SECONDS - 0.01
    assert queue.enqueue(queue.DISPATCH_JOB, job_id="skipped") is False
    assert redis_client.llen(own_queue) == 0
    clock.now += 0.01
    assert queue.enqueue(queue.DISPATCH_JOB, job_id="sent") is True
    (raw,) = redis_client.lrange(own_queue, 0, -1)
    message = json.loads(raw)
    assert message["headers"]["task"] == "workers.dispatch.send"
    assert message["headers"]["kwargsrepr"] == "{'job_id': 'sent'}"


def test_a_reachable_broker_takes_each_task(clock, monkeypatch, redis_client, own_queue):
    monkeypatch.setattr(queue, "celery_app", app_with_broker(TEST_REDIS_URL, own_queue))
    assert queue.enqueue(queue.APPLY_DELIVERIES, delivery_pks=[1, 2]) is True
    assert queue.enqueue(queue.APPLY_DELIVERIES, delivery_pks=[3]) is True
    assert redis_client.llen(own_queue) == 2
