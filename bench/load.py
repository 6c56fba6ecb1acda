"""Load in Python: a keep-alive asyncio HTTP/1.1 client, minimal because every cycle it spends
is taken from the service on the same cores; a sender that retries until accepted; the
open-loop sender whose pollers measure accept-to-visible."""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass

from helpers import hmac_headers

HOOK = "/api/n8n/hooks/job-status"
ERRORS = (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError)


def callback_body(job_id: str, progress: int, message: str) -> bytes:
    """A typical n8n progress report (what most callbacks are), for a job of user `bench`."""
    return json.dumps({"job_id": job_id, "status": "running", "progress": progress, "message": message,
                       "user_id": "bench"}).encode()


def signed(secret: bytes, body: bytes, delivery_id: str) -> dict:
    return hmac_headers(secret, body, **{"X-Delivery-Id": delivery_id})


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None when empty."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1] if ordered else None


def summary_ms(seconds: list[float]) -> dict:
    ms = [s * 1000 for s in seconds]
    out = {f"p{q:g}": None if percentile(ms, q) is None else round(percentile(ms, q), 2) for q in (50, 90, 99)}
    return {"n": len(ms), **out, "max": round(max(ms), 2) if ms else None}


class HttpPool:
    """Keep-alive HTTP/1.1 connections to one host (answers with Content-Length, as the service's)."""

    def __init__(self, port: int, size: int = 32, timeout: float = 30):
        self.port, self.timeout, self.requests = port, timeout, 0
        self._idle: list = []
        self._slots = asyncio.Semaphore(size)

    async def request(self, method: str, path: str, headers: dict, body: bytes = b"") -> tuple[int, dict, bytes]:
        async with self._slots:
            for reuse in (bool(self._idle), False):
                reader, writer = self._idle.pop() if reuse else await asyncio.open_connection("127.0.0.1", self.port)
                try:
                    answer = await asyncio.wait_for(self._exchange(reader, writer, method, path, headers, body),
                                                    self.timeout)
                    break
                except ERRORS:
                    writer.close()
                    if not reuse:  # else a kept-alive connection the server closed: once more on a new one
                        raise
            self._idle.append((reader, writer))
            self.requests += 1
            return answer

    async def _exchange(self, reader, writer, method, path, headers, body):
        head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        status = int((await reader.readuntil(b"\r\n")).split()[1])
        answer_headers = {}
        while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.decode("latin-1").partition(":")
            answer_headers[name.strip().lower()] = value.strip()
        length = int(answer_headers.get("content-length", 0))
        return status, answer_headers, await reader.readexactly(length) if length else b""

    def close(self) -> None:
        for _, writer in self._idle:
            writer.close()


async def send_all(port: int, secret: bytes, items: list[tuple[str, bytes]], concurrency: int = 16) -> dict:
    """POST each (delivery id, body) signed, retried while not 200 as a sender does; status counts."""
    pool, statuses, todo = HttpPool(port, concurrency), {}, list(reversed(items))

    async def sender():
        while todo:
            delivery_id, body = todo.pop()
            for attempt in range(20):
                try:
                    status = (await pool.request("POST", HOOK, signed(secret, body, delivery_id), body))[0]
                except ERRORS as exc:
                    status = type(exc).__name__
                statuses[str(status)] = statuses.get(str(status), 0) + 1
                if status == 200:
                    break
                await asyncio.sleep(min(2.0, 0.1 * 2 ** attempt))

    await asyncio.gather(*(sender() for _ in range(concurrency)))
    pool.close()
    return statuses


@dataclass
class Sample:
    scheduled: float
    traced: bool
    sent: float = 0.0
    accepted: float | None = None
    visible: float | None = None
    status: int | str | None = None


async def open_loop(port: int, secret: bytes, token: str, jobs: list[str], rate: float, seconds: float,
                    prefix: str, poll_interval: float, poll_every: int, visible_timeout: float = 30.0) -> dict:
    """Callbacks on a schedule fixed in advance (open loop: delivery i leaves at t0 + i/rate
    whatever the service does); one in `poll_every` is then polled (GET /api/jobs/<id>, with
    If-None-Match as a frontend does) until its event is listed. Delivery i goes to job
    i % len(jobs), so that a job has one delivery in flight at a time."""
    posts, gets = HttpPool(port, 64), HttpPool(port, 64)
    auth = {"Authorization": f"Bearer {token}"}
    known: dict[str, tuple[str, set]] = {}  # per job: the last ETag and the messages it listed
    loop = asyncio.get_running_loop()

    async def one(i: int, sample: Sample) -> None:
        job, marker = jobs[i % len(jobs)], f"{prefix}-{i}"
        body = callback_body(job, min(100, 1 + i // len(jobs)), marker)
        sample.sent = loop.time()
        try:
            sample.status = (await posts.request("POST", HOOK, signed(secret, body, marker), body))[0]
        except ERRORS as exc:
            sample.status = type(exc).__name__
        if sample.status != 200:
            return
        sample.accepted = loop.time()
        while sample.traced and loop.time() < sample.accepted + visible_timeout:
            etag, listed = known.get(job, ("", set()))
            try:
                status, headers, answer = await gets.request(
                    "GET", f"/api/jobs/{job}", {**auth, "If-None-Match": f'"{etag}"'} if etag else auth)
            except ERRORS:
                status = None
            if status == 200:
                listed = {event.get("message") for event in json.loads(answer).get("events") or []}
                known[job] = (headers.get("etag", "").removeprefix("W/").strip('"'), listed)
            # A 304 means "still the state last fetched": another poller of the job may have fetched it.
            if status in (200, 304) and marker in listed:
                sample.visible = loop.time()
                return
            # Every poll_interval for half a second (the resolution the target needs), then
            # backing off to 1 s as a frontend does: a lagging service is not buried under polls.
            waited = loop.time() - sample.accepted
            await asyncio.sleep(poll_interval if waited < 0.5 else min(1.0, max(poll_interval, waited / 4)))

    start, samples, tasks = loop.time() + 0.2, [], []
    for i in range(int(rate * seconds)):
        samples.append(Sample(start + i / rate, traced=i % poll_every == 0))
        await asyncio.sleep(max(0.0, samples[-1].scheduled - loop.time()))
        tasks.append(asyncio.create_task(one(i, samples[-1])))
    await asyncio.gather(*tasks)
    posts.close()
    gets.close()
    return report(samples, rate, gets.requests, visible_timeout)


def report(samples: list[Sample], rate: float, gets: int, visible_timeout: float) -> dict:
    accepted = [s for s in samples if s.accepted is not None]
    traced = [s for s in accepted if s.traced]
    visible = [s for s in traced if s.visible is not None]
    # Not visible in time counts as the timeout (the percentiles are then lower bounds), never as absent.
    to_visible = [(s.visible or s.accepted + visible_timeout) - s.accepted for s in traced]
    statuses: dict[str, int] = {}
    for s in samples:
        statuses[str(s.status)] = statuses.get(str(s.status), 0) + 1
    thirds = [traced[k * len(traced) // 3:(k + 1) * len(traced) // 3] for k in range(3)]
    return {
        "target_rate": rate, "sent": len(samples), "post_statuses": statuses, "accepted": len(accepted),
        "traced": len(traced), "visible": len(visible), "gets": gets,
        "accept_to_visible_ms": {**summary_ms(to_visible), "lower_bound": len(visible) < len(traced)},
        "accept_latency_ms": summary_ms([s.accepted - s.sent for s in accepted]),
        "scheduled_to_visible_ms": summary_ms([s.visible - s.scheduled for s in visible]),
        # Steady or saturated: the median over the first, middle and last third of the run.
        "accept_to_visible_p50_by_third_ms": [
            summary_ms([(s.visible or s.accepted + visible_timeout) - s.accepted for s in part])["p50"]
            for part in thirds],
    }
