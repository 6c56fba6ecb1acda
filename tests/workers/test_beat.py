"""workers/beat.py: the scheduler records beat's heartbeat at most once per sweep interval, on
beat's own ticks, and keeps scheduling when the database cannot take it. The clock is injected."""

import logging
from types import SimpleNamespace

import pytest
from celery import Celery

from helpers import Clock
from shared import sweeps
from shared.settings import Settings
from workers import beat


@pytest.fixture
def clock(monkeypatch):
    clock = Clock(now=1000.0)
    monkeypatch.setattr(beat, "time", SimpleNamespace(monotonic=clock))
    monkeypatch.setattr(beat, "settings", lambda: Settings(database_url="unused://", broker_url="memory://",
                                                           sweep_interval=5.0))
    return clock


@pytest.fixture
def heartbeats(monkeypatch, database_url):
    """The names beat records, in order, through the workers' real transaction."""
    recorded = []
    monkeypatch.setattr(sweeps, "beat", lambda session, name: recorded.append(name))
    return recorded


@pytest.fixture
def scheduler():
    # An empty schedule: tick() then only waits, and the heartbeat is all it does.
    return beat.Scheduler(Celery("beat-test", set_as_current=False), schedule={}, lazy=True)


def test_the_first_tick_records_the_heartbeat(clock, heartbeats, scheduler):
    scheduler.tick()
    assert heartbeats == [sweeps.BEAT]


def test_a_burst_of_ticks_within_an_interval_records_once(clock, heartbeats, scheduler):
    for _ in range(50):
        scheduler.tick()
        clock.now += 0.09
    assert heartbeats == [sweeps.BEAT]


def test_one_heartbeat_per_interval_as_time_passes(clock, heartbeats, scheduler):
    scheduler.tick()
    clock.now += 4.999
    scheduler.tick()
    assert len(heartbeats) == 1
    clock.now += 0.001  # five seconds after the first: due again
    scheduler.tick()
    clock.now += 12.0
    scheduler.tick()
    scheduler.tick()
    assert heartbeats == [sweeps.BEAT] * 3


def test_a_database_that_refuses_the_heartbeat_does_not_stop_scheduling(clock, monkeypatch, scheduler, caplog):
    def unavailable(session, name):
        raise ConnectionError("database down")

    monkeypatch.setattr(sweeps, "beat", unavailable)
    with caplog.at_level(logging.WARNING, logger="workers.beat"):
        assert scheduler.tick() == scheduler.max_interval
    assert caplog.messages == [
        "beat could not record its heartbeat (ConnectionError: database down); retrying next interval"]
