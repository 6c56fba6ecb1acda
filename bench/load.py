"""Load generation in Python: signing, a small keep-alive asyncio HTTP/1.1 client, and the
open-loop sender with pollers that measures accept-to-visible latency.

The client is deliberately minimal (no dependency, little CPU per request): the machine has
two cores and every cycle the load generator spends is taken from the service.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import time
from dataclasses import dataclass, field

HOOK = "/api/n8n/hooks/job-status"


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """X-Signature as a sender computes it: sha256=HMAC-SHA256(secret, "<ts>.<body>")."""
    return "sha256=" + hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signed_headers(secret: bytes, body: bytes, delivery_id: str, timestamp: int | None = None) -> dict:
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "Content-Type": "application/json",
        "X-Timestamp": str(ts),
        "X-Signature": sign(secret, ts, body),
        "X-Delivery-Id": delivery_id,
    }


def callback_body(job_id: str, progress: int, message: str, user_id: str = "bench") -> bytes:
    """A typical n8n progress report (what most callbacks are)."""
    return json.dumps(
        {"job_id": job_id, "status": "running", "progress": progress, "message": message, "user_id": user_id},
        separators=(", ", ": "),
    ).encode()


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of `values`; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summary_ms(values_s: list[float]) -> dict:
    ms = [v * 1000 for v in values_s]
    out = {"n": len(ms)}
    for q in (50, 90, 99, 99.9):
        p = percentile(ms, q)
        out[f"p{q:g}"] = None if p is None else round(p, 2)
    out["max"] = round(max(ms), 2) if ms else None
    out["mean"] = round(sum(ms) / len(ms), 2) if ms else None
    return out


# --- HTTP client ------------------------------------------------------------------------


class HttpError(Exception):
    pass


class HttpPool:
    """Keep-alive HTTP/1.1 connections to one host; at most `size` requests at once."""

    def __init__(self, host: str, port: int, size: int = 32, timeout: float = 30):
        self.host, self.port, self.timeout = host, port, timeout
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._sem = asyncio.Semaphore(size)
        self.requests = 0

    async def request(self, method: str, path: str, headers: dict | None = None, body: bytes = b""):
        """(status, headers with lower-case names, body)."""
        async with self._sem:
            for attempt in (0, 1):
                conn = self._idle.pop() if self._idle and attempt == 0 else None
                reused = conn is not None
                if conn is None:
                    conn = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), self.timeout)
                try:
                    status, rheaders, rbody, keep = await asyncio.wait_for(
                        self._roundtrip(conn, method, path, headers or {}, body), self.timeout
                    )
                except (ConnectionError, asyncio.IncompleteReadError, HttpError) as exc:
                    conn[1].close()
                    # A kept-alive connection the server closed while idle: once more on a new one.
                    if reused and attempt == 0 and getattr(exc, "before_response", False):
                        continue
                    raise
                except BaseException:
                    conn[1].close()
                    raise
                if keep:
                    self._idle.append(conn)
                else:
                    conn[1].close()
                self.requests += 1
                return status, rheaders, rbody
        raise HttpError("unreachable")

    async def _roundtrip(self, conn, method, path, headers, body):
        reader, writer = conn
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        if body or method in ("POST", "PUT", "PATCH"):
            head.append(f"Content-Length: {len(body)}")
        head += [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        line = await reader.readline()
        if not line:
            exc = ConnectionResetError("connection closed before the response")
            exc.before_response = True
            raise exc
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise HttpError(f"bad status line {line!r}")
        status = int(parts[1])
        rheaders: dict[str, str] = {}
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            rheaders[name.strip().lower()] = value.strip()
        keep = rheaders.get("connection", "").lower() != "close"
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            rbody = b""
        elif "content-length" in rheaders:
            rbody = await reader.readexactly(int(rheaders["content-length"]))
        elif rheaders.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await reader.readline()).split(b";")[0], 16)
                if size == 0:
                    while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(await reader.readexactly(size))
                await reader.readexactly(2)
            rbody = b"".join(chunks)
        else:
            rbody = await reader.read()
            keep = False
        return status, rheaders, rbody, keep

    def close(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()


# --- sending many -----------------------------------------------------------------------


async def send_all(host: str, port: int, secret: bytes, items: list[tuple[str, bytes]], concurrency: int = 16) -> dict:
    """POST each (delivery_id, body) signed, `concurrency` at a time; retried while not 200
    (as a sender does), so that every item ends up accepted. Returns status counts."""
    pool = HttpPool(host, port, size=concurrency)
    statuses: dict[str, int] = {}
    queue = list(reversed(items))

    async def worker():
        while queue:
            delivery_id, body = queue.pop()
            for attempt in range(20):
                try:
                    status, _, _ = await pool.request("POST", HOOK, signed_headers(secret, body, delivery_id), body)
                except (OSError, asyncio.TimeoutError, HttpError) as exc:
                    status = type(exc).__name__
                statuses[str(status)] = statuses.get(str(status), 0) + 1
                if status == 200:
                    break
                await asyncio.sleep(min(2.0, 0.1 * 2 ** attempt))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    pool.close()
    return statuses


@dataclass
class Sample:
    i: int
    scheduled: float
    sent: float = 0.0
    accepted: float | None = None
    visible: float | None = None
    status: int | str | None = None
    polls: int = 0
    traced: bool = True  # polled until visible (one delivery in `poll_every`)


@dataclass
class OpenLoopResult:
    samples: list[Sample] = field(default_factory=list)
    gets: int = 0
    get_statuses: dict = field(default_factory=dict)


async def open_loop(
    host: str, port: int, secret: bytes, token: str, jobs: list[str], rate: float, seconds: float,
    run_id: str, poll_interval: float = 0.02, visible_timeout: float = 30.0, first_progress: int = 1,
    poll_every: int = 1,
) -> OpenLoopResult:
    """Deliveries at a fixed rate (schedule fixed in advance: open loop), one in `poll_every`
    followed by a poller that GETs its job until the callback is visible (its event is listed).

    Polling every delivery every 20 ms made the measurement the load: at 300 ms of latency,
    15 GETs per delivery, 1 500 GETs/s for 100 deliveries/s, and the more the service lagged
    the more it was polled. Traced deliveries are a sample of the same stream: the load is
    the 100 deliveries/s and the pollers of one in `poll_every` of them.

    Delivery i goes to job i % len(jobs); with enough jobs, one job has one delivery in
    flight at a time, so its ETag tells the poller when to look again.
    """
    posts = HttpPool(host, port, size=64)
    gets = HttpPool(host, port, size=64)
    result = OpenLoopResult()
    # Per job: the ETag of the last full answer and the event messages it listed. A 304
    # means "still that state", so a marker listed there is visible now (another poller of
    # the same job may have fetched the state that already includes this delivery).
    etags: dict[str, tuple[str, set]] = {}
    auth = {"Authorization": f"Bearer {token}"}
    n = int(rate * seconds)
    loop = asyncio.get_running_loop()

    async def one(sample: Sample):
        job = jobs[sample.i % len(jobs)]
        progress = min(100, first_progress + sample.i // len(jobs))
        marker = f"{run_id}-{sample.i}"
        body = callback_body(job, progress, marker)
        sample.sent = loop.time()
        try:
            status, _, _ = await posts.request("POST", HOOK, signed_headers(secret, body, marker), body)
        except (OSError, asyncio.TimeoutError, HttpError) as exc:
            sample.status = type(exc).__name__
            return
        sample.status = status
        if status != 200:
            return
        sample.accepted = loop.time()
        if not sample.traced:
            return
        deadline = sample.accepted + visible_timeout
        while True:
            headers = dict(auth)
            known = etags.get(job)
            if known:
                headers["If-None-Match"] = f'"{known[0]}"'
            try:
                gstatus, gheaders, gbody = await gets.request("GET", f"/api/jobs/{job}", headers)
            except (OSError, asyncio.TimeoutError, HttpError) as exc:
                gstatus, gheaders, gbody = type(exc).__name__, {}, b""
            now = loop.time()
            sample.polls += 1
            result.get_statuses[str(gstatus)] = result.get_statuses.get(str(gstatus), 0) + 1
            if gstatus == 200:
                events = json.loads(gbody).get("events") or []
                messages = {e.get("message") for e in events}
                if "etag" in gheaders:
                    etags[job] = (gheaders["etag"].removeprefix("W/").strip('"'), messages)
                if marker in messages:
                    sample.visible = now
                    return
            elif gstatus == 304 and known and marker in known[1]:
                sample.visible = now
                return
            if now > deadline:
                return
            # Every `poll_interval` for the first half second (the resolution the 250 ms target
            # needs), then backing off to 1 s, as a frontend would: a saturated service is not
            # buried under ever more polls.
            elapsed = now - sample.accepted
            wait = poll_interval if elapsed < 0.5 else min(1.0, max(poll_interval, elapsed * 0.25))
            await asyncio.sleep(wait)

    tasks = []
    start = loop.time() + 0.2
    for i in range(n):
        sample = Sample(i, start + i / rate, traced=i % poll_every == 0)
        result.samples.append(sample)
        delay = sample.scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(sample)))
    await asyncio.gather(*tasks)
    result.gets = gets.requests
    posts.close()
    gets.close()
    return result


def open_loop_report(result: OpenLoopResult, rate: float, poll_interval: float, visible_timeout: float = 30.0) -> dict:
    s = result.samples
    every_accepted = [x for x in s if x.accepted is not None]
    accepted = [x for x in every_accepted if x.traced]
    visible = [x for x in accepted if x.visible is not None]
    # A delivery not visible within the timeout counts as the timeout (so the percentiles
    # are lower bounds when any is missing), never as absent.
    a2v = [(x.visible - x.accepted) if x.visible is not None else visible_timeout for x in accepted]
    statuses: dict[str, int] = {}
    for x in s:
        statuses[str(x.status)] = statuses.get(str(x.status), 0) + 1
    span = (s[-1].scheduled - s[0].scheduled) if len(s) > 1 else 0
    return {
        "target_rate": rate,
        "sent": len(s),
        "sent_rate": round((len(s) - 1) / span, 1) if span else None,
        "sender_lag_ms": summary_ms([x.sent - x.scheduled for x in s]),
        "post_statuses": statuses,
        "accepted": len(every_accepted),
        "traced": len(accepted),
        "visible": len(visible),
        "not_visible_in_time": len(accepted) - len(visible),
        "accept_latency_ms": summary_ms([x.accepted - x.sent for x in every_accepted]),
        "accept_to_visible_ms": {**summary_ms(a2v), "lower_bound": len(visible) < len(accepted)},
        "scheduled_to_visible_ms": summary_ms([x.visible - x.scheduled for x in visible]),
        # Steady or saturated? The same figure over the first, middle and last third of the run.
        "accept_to_visible_p50_by_third_ms": [
            summary_ms([(x.visible - x.accepted) if x.visible is not None else visible_timeout
                        for x in part if x.accepted is not None and x.traced])["p50"]
            for part in (s[: len(s) // 3], s[len(s) // 3: 2 * len(s) // 3], s[2 * len(s) // 3:])
        ],
        "polls_per_traced_delivery": round(sum(x.polls for x in accepted) / max(1, len(accepted)), 2),
        "poll_interval_ms": poll_interval * 1000,
        "gets": result.gets,
        "get_statuses": result.get_statuses,
    }
