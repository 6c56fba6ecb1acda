"""/readyz's and doctor's process checks: beat's tick and the worker canary (CONTRACT §3); /metrics' job counts."""

import uuid

from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import text

from ingress.ops import DatabaseCollector, process_checks
from shared import lifecycle
from shared.models import Job


def test_fresh_heartbeats_are_ok():
    assert process_checks({"beat": 1.2, "canary": 2.9}, sweep_interval=1) == {"beat": None, "worker": None}


def test_a_stopped_beat_is_named():
    checks = process_checks({"beat": 42.0, "canary": 41.0}, sweep_interval=5)
    assert checks["beat"] == "no tick for 42 s: is the beat process running?"
    # The canary needs beat: the worker is not blamed for it.
    assert checks["worker"] == "canary last ran 41 s ago: beat does not schedule it (see beat)"


def test_a_worker_that_stopped_consuming_is_named():
    checks = process_checks({"beat": 2.0, "canary": 40.0}, sweep_interval=5)
    assert checks == {"beat": None, "worker": "canary last ran 40 s ago: no worker consumes the sweeps queue"}


def test_stale_after_three_sweep_intervals():
    assert process_checks({"beat": 15.0, "canary": 15.0}, sweep_interval=5) == {"beat": None, "worker": None}
    assert all(process_checks({"beat": 15.5, "canary": 15.5}, sweep_interval=5).values())


def test_never_recorded():
    checks = process_checks({"beat": None, "canary": None}, sweep_interval=5)
    assert checks["beat"] == "no tick recorded yet: is the beat process running?"
    assert checks["worker"] == "the canary never ran: beat does not schedule it (see beat)"


def scrape(session) -> dict[str, float]:
    """The bridge_jobs samples /metrics shows, read off the text a scraper reads."""
    registry = CollectorRegistry()
    registry.register(DatabaseCollector(session))
    lines = generate_latest(registry).decode().splitlines()
    assert "# TYPE bridge_jobs gauge" in lines
    samples = {}
    for line in lines:
        if line.startswith("bridge_jobs{"):
            labels, value = line.rsplit(" ", 1)
            samples[labels] = float(value)
    return samples


def test_metrics_count_the_jobs_of_each_status(session):
    # Workers left running by other tests may change jobs: hold their writes off until the rollback,
    # so that both scrapes see the same jobs but the ones added here.
    session.execute(text("LOCK TABLE jobs IN SHARE MODE"))
    before = scrape(session)
    added = {status: n for n, status in enumerate(lifecycle.STATUSES, start=1)}
    for status, count in added.items():
        for _ in range(count):
            session.add(Job(id=f"metrics-{uuid.uuid4().hex}", job_type="report", status=status, source="api"))
    session.flush()
    after = scrape(session)
    assert {labels: after[labels] - before.get(labels, 0.0) for labels in after} == {
        'bridge_jobs{status="pending"}': 1.0,
        'bridge_jobs{status="dispatched"}': 2.0,
        'bridge_jobs{status="running"}': 3.0,
        'bridge_jobs{status="succeeded"}': 4.0,
        'bridge_jobs{status="failed"}': 5.0,
        'bridge_jobs{status="cancelled"}': 6.0,
    }
