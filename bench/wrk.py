"""wrk: finding it, feeding it signed bodies, running it for a duration or an exact count."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from bench.load import callback_body
from helpers import wait_for
from shared.signing import hmac_signature

SCRIPT = Path(__file__).resolve().parent / "wrk_hooks.lua"


def ensure_wrk() -> None:
    if not shutil.which("wrk"):
        raise SystemExit("wrk is required and not installed: apt-get install -y wrk")


def write_bodies(path: Path, secret: bytes, jobs: list[str], n: int) -> Path:
    """`n` distinct bodies (the i-th for job i % len(jobs)), each signed with the timestamp of now."""
    ts = int(time.time())
    with open(path, "w") as f:
        for i in range(n):
            body = callback_body(jobs[i % len(jobs)], 50, f"wrk {path.stem} {i}")
            f.write(f"{ts}\t{hmac_signature(secret, ts, body)}\t{body.decode()}\n")
    return path


def run(url: str, secret: bytes, jobs: list[str], prefix: str, workdir: Path, name: str, *, seconds: float = 0,
        count: int = 0, threads: int = 2, connections: int = 32, max_rate: int = 10_000) -> dict:
    """wrk for `seconds`, or for exactly `count` deliveries (stopped once all are answered); each
    request a distinct delivery, for up to `max_rate` requests per second."""
    bodies = write_bodies(workdir / f"wrk-{name}.tsv", secret, jobs, count or int(seconds * max_rate))
    done = workdir / f"wrk-{name}.done"
    shutil.rmtree(done, ignore_errors=True)
    done.mkdir(parents=True)
    duration = 600 if count else seconds
    argv = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{int(duration)}s", "--timeout", "10s",
            "-s", str(SCRIPT), url, "--", str(bodies), prefix, str(count), str(threads), str(done)]
    out = workdir / f"wrk-{name}.out"
    with open(out, "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        if count:
            # wrk's main thread sleeps for -d whatever its threads do: SIGINT once they are all done.
            wait_for(lambda: proc.poll() is not None or len(list(done.iterdir())) >= threads,
                     timeout=duration, interval=0.02, message="wrk's threads to send their share")
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=duration + 60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = out.read_text(errors="replace")
    lines = [line for line in text.splitlines() if line.startswith("BENCH_JSON ")]
    if not lines:
        raise RuntimeError(f"wrk gave no result:\n{text[-3000:]}")
    result = json.loads(lines[0].removeprefix("BENCH_JSON "))
    if not count:
        bodies.unlink()  # up to seconds x max_rate of them: kept only where the burst re-sends from them
    ran = result["duration_us"] / 1e6
    result.update(seconds=round(ran, 3), ok_per_s=round(result["ok"] / ran, 1) if ran else None,
                  latency_ms={k: round(v / 1000, 2) for k, v in result.pop("latency_us").items()})
    return result
