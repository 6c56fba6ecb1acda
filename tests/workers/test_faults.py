"""Faults on real processes: a worker SIGKILLed mid-burst, the broker flushed after
acceptance. Every accepted delivery is applied exactly once (CONTRACT §2)."""

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import func, select

from helpers import burst, hmac_headers, wait_for
from helpers.env import N8N_SECRET
from helpers.processes import private_stack
from shared.models import Delivery, Job, JobEvent, Notification

HOOK = "/api/n8n/hooks/job-status"


@pytest.fixture(scope="module")
def fault_stack(database_url, n8n, tmp_path_factory):
    """Its own stack on a private Redis, so that killing and flushing touch nothing else."""
    with private_stack(tmp_path_factory.mktemp("faults"), n8n) as stack:
        yield stack


def post_all(stack, bodies: list[bytes]) -> list[int]:
    def post(body):
        response = requests.post(stack.base_url + HOOK, data=body, headers=hmac_headers(N8N_SECRET, body), timeout=30)
        return response.status_code

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(post, bodies))


def counts(engine, run: str) -> dict:
    like = f"{run}-%"
    with engine.connect() as db:
        return {
            "deliveries": db.scalar(select(func.count()).select_from(Delivery).where(Delivery.job_id.like(like))),
            "applied": db.scalar(
                select(func.count()).select_from(Delivery)
                .where(Delivery.job_id.like(like), Delivery.applied_at.is_not(None))
            ),
            "events": db.scalar(select(func.count()).select_from(JobEvent).where(JobEvent.job_id.like(like))),
            "succeeded": db.scalar(
                select(func.count()).select_from(Job).where(Job.id.like(like), Job.status == "succeeded")
            ),
            "notifications": db.scalar(
                select(func.count()).select_from(Notification)
                .where(Notification.job_id.like(like), Notification.type == "job_succeeded")
            ),
            "jobs": db.scalar(select(func.count()).select_from(Job).where(Job.id.like(like))),
        }


def assert_exactly_once(engine, run: str, jobs: int, reliability, fault: str) -> dict:
    total = jobs * 3
    try:
        final = wait_for(lambda: (c := counts(engine, run))["applied"] == total and c, timeout=90,
                         message=f"all {total} deliveries applied")
    finally:
        last = counts(engine, run)
        reliability.fault(fault, accepted=total, applied_once=last["applied"], events=last["events"])
    assert final == {"deliveries": total, "applied": total, "events": total, "succeeded": jobs,
                     "notifications": jobs, "jobs": jobs}
    return final


def test_worker_sigkilled_mid_burst_loses_nothing_applies_nothing_twice(fault_stack, engine, reliability):
    run = f"kill-{uuid.uuid4().hex[:8]}"
    jobs = 80
    bodies = burst(run, jobs)
    statuses: list[int] = []
    sender = threading.Thread(target=lambda: statuses.extend(post_all(fault_stack, bodies)))
    sender.start()
    wait_for(lambda: counts(engine, run)["applied"] >= 30, timeout=60, message="some deliveries applied")
    fault_stack.kill("worker")  # SIGKILL to the worker and its pool, mid-burst
    at_kill = counts(engine, run)["applied"]
    sender.join()
    assert statuses == [200] * len(bodies)
    assert at_kill < len(bodies), "the burst ended before the kill: nothing was in flight"
    fault_stack.start_worker()
    assert_exactly_once(engine, run, jobs, reliability, "worker SIGKILLed mid-burst")


def test_broker_flushed_after_acceptance(fault_stack, engine, reliability):
    run = f"flush-{uuid.uuid4().hex[:8]}"
    jobs = 40
    fault_stack.kill("worker")
    assert post_all(fault_stack, burst(run, jobs)) == [200] * jobs * 3
    assert counts(engine, run)["applied"] == 0
    fault_stack.broker.client().flushall()  # every accepted message is gone from the broker
    fault_stack.start_worker()
    assert_exactly_once(engine, run, jobs, reliability, "broker flushed after acceptance")


def test_broker_down_while_senders_post(fault_stack, engine, reliability):
    """Answers stay 2xx and fast; once Redis is back, workers and beat reconnect by
    themselves and the sweep enqueues what the ingress could not."""
    run = f"down-{uuid.uuid4().hex[:8]}"
    jobs = 10
    fault_stack.broker.stop()
    try:
        bodies = burst(run, jobs)
        started = time.monotonic()
        assert post_all(fault_stack, bodies) == [200] * len(bodies)
        elapsed = time.monotonic() - started
    finally:
        fault_stack.broker.start()
    assert counts(engine, run)["deliveries"] == len(bodies)
    # Each web process pays for one failed publish, then leaves enqueueing to the sweep.
    assert elapsed < 10, f"{len(bodies)} answers took {elapsed:.1f} s with the broker down"
    assert_exactly_once(engine, run, jobs, reliability, "broker down while senders post")
