"""wrk: finding it, feeding it signed bodies, running it for a duration or an exact count."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from bench.load import callback_body, sign

LUA = Path(__file__).resolve().parent / "wrk_hooks.lua"
GET_LUA = Path(__file__).resolve().parent / "wrk_get.lua"
INSTALL = "apt-get update && apt-get install -y wrk"


def ensure_wrk(install: bool) -> str:
    """The wrk binary; installed with apt-get when missing, `install` is set and we are root."""
    found = shutil.which("wrk")
    if found:
        return found
    if install and os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"wrk is missing; installing it: {INSTALL}", flush=True)
        subprocess.run(["sh", "-c", INSTALL + " >/dev/null"], check=True)
        found = shutil.which("wrk")
        if found:
            return found
    raise SystemExit(f"wrk is required and not installed. Install it with:\n  {INSTALL}\n"
                     "(as root; run.py does it itself when run as root unless --no-install is given)")


def write_bodies(path: Path, secret: bytes, jobs: list[str], progress: int = 50) -> Path:
    """One signed body per job, timestamped now (valid for the 300 s tolerance)."""
    ts = int(time.time())
    with open(path, "w") as f:
        for n, job in enumerate(jobs):
            body = callback_body(job, progress, f"wrk step {n}")
            f.write(f"{ts}\t{sign(secret, ts, body)}\t{body.decode()}\n")
    return path


def run(
    wrk: str, url: str, bodies: Path, prefix: str, workdir: Path, *, seconds: float = 10, count: int = 0,
    threads: int = 2, connections: int = 32, timeout: float = 600, log_name: str = "wrk",
    script: Path = LUA, script_args: list[str] | None = None,
) -> dict:
    """Run wrk; with `count`, exactly that many deliveries, stopped as soon as all are answered.

    With `script`/`script_args`, another script for a duration (bench/wrk_get.lua)."""
    done_dir = workdir / f"{log_name}.done"
    shutil.rmtree(done_dir, ignore_errors=True)
    done_dir.mkdir(parents=True)
    duration = timeout if count else seconds
    if script_args is None:
        script_args = [str(bodies), prefix, str(count), str(threads), str(done_dir)]
    argv = [wrk, "-t", str(threads), "-c", str(connections), "-d", f"{int(duration)}s", "--timeout", "10s",
            "-s", str(script), url, "--", *script_args]
    out_path = workdir / f"{log_name}.out"
    started = time.monotonic()
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        if count:
            while proc.poll() is None:
                if len(list(done_dir.iterdir())) >= threads:
                    # wrk's main thread sleeps for -d whatever its threads do: SIGINT ends it now.
                    proc.send_signal(signal.SIGINT)
                    break
                time.sleep(0.02)
        try:
            proc.wait(timeout=duration + 60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    wall = time.monotonic() - started
    text = out_path.read_text(errors="replace")
    for line in text.splitlines():
        if line.startswith("BENCH_JSON "):
            result = json.loads(line[len("BENCH_JSON "):])
            break
    else:
        raise RuntimeError(f"wrk gave no result:\n{text[-3000:]}")
    seconds_run = result["duration_us"] / 1e6
    result.setdefault("filler", 0)
    result.update(
        seconds=round(seconds_run, 3),
        wall_seconds=round(wall, 3),
        ok_per_s=round(result["ok"] / seconds_run, 1) if seconds_run else None,
        threads=threads,
        connections=connections,
        latency_ms={k: round(v / 1000, 2) for k, v in result.pop("latency_us").items()},
    )
    return result
