"""Helpers shared by the tests: auth headers, signing, waiting for an outcome, a clock to move."""

from __future__ import annotations

import json
import time

from shared.signing import hmac_signature, standard_webhooks_signature


class Clock:
    """A monotonic clock for code that takes one (`clock=`): it moves only when the test says."""

    def __init__(self, now: float = 1_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def body_of(payload) -> bytes:
    return payload if isinstance(payload, bytes) else json.dumps(payload).encode()


def burst(run: str, jobs: int) -> list[bytes]:
    """A sender's burst: three callbacks per job (two progress reports and a success), interleaved, for owner-<run>."""
    bodies = []
    for step in ({"status": "running", "progress": 30}, {"status": "generating", "progress": 60},
                 {"status": "succeeded", "result": {"ok": True}}):
        for n in range(jobs):
            bodies.append(body_of({"job_id": f"{run}-{n}", "user_id": f"owner-{run}", **step}))
    return bodies


def hmac_headers(secret: str | bytes, body: bytes, timestamp: int | None = None, **extra) -> dict:
    """X-Timestamp and X-Signature as a sender computes them."""
    secret = secret.encode() if isinstance(secret, str) else secret
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "Content-Type": "application/json",
        "X-Timestamp": str(ts),
        "X-Signature": hmac_signature(secret, ts, body),
        **extra,
    }


def standard_headers(secret: bytes, webhook_id: str, body: bytes, timestamp: int | None = None) -> dict:
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "Content-Type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": standard_webhooks_signature(secret, webhook_id, ts, body),
    }


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.1, message: str = "condition"):
    """Poll `predicate` until it returns a truthy value; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message} (last: {last!r})")


def run_task(pks, redelivered=False):
    """Run workers.deliveries.apply's body in this process, as a worker would for a message
    (`redelivered`: kombu's flag on a message that came back after its worker died)."""
    from workers.deliveries import apply

    apply.push_request(delivery_info={"redelivered": redelivered})
    try:
        return apply.run(delivery_pks=pks)
    finally:
        apply.pop_request()
