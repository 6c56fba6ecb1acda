"""/readyz's and doctor's process checks: beat's tick and the worker canary (CONTRACT §3)."""

from ingress.ops import process_checks


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
    assert checks["worker"].startswith("the canary never ran")
