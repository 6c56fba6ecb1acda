"""Profiling under load (`bench/run.py --profile`): py-spy on the gunicorn workers while wrk
posts callbacks, py-spy on the Celery pool while it applies the backlog, and round trips
per delivery counted in-process (bench/roundtrips.py).

Two py-spy recordings per side:
- "cpu": the thread holding the GIL (--gil): where the Python processes' cores go;
- "wall": every thread, idle ones included (--idle), restricted to stacks inside a request
  or a task: where a delivery's time goes, waits on PostgreSQL and Redis included.

Raw (collapsed) stacks are kept in the run directory (open them with speedscope.app or
flamegraph.pl); the summary attributes samples to the direct children of the view
(`receive`, ingress/hooks.py) and of the task (`apply`, workers/deliveries.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from bench import stack

RATE = 100  # samples per second per thread
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def py_spy(install: bool) -> str:
    found = shutil.which("py-spy", path=str(stack.BIN)) or shutil.which("py-spy")
    if found:
        return found
    requirements = Path(__file__).resolve().parent / "requirements.txt"
    command = [str(stack.BIN / "pip"), "install", "-q", "-r", str(requirements)]
    if not install:
        raise SystemExit(f"py-spy is needed for --profile: {' '.join(command)}")
    print(f"installing py-spy: {' '.join(command)}", flush=True)
    subprocess.run(command, check=True)
    return shutil.which("py-spy", path=str(stack.BIN)) or "py-spy"


def record(binary: str, pid: int, seconds: float, out: Path, idle: bool) -> subprocess.Popen:
    argv = [binary, "record", "--pid", str(pid), "--subprocesses", "--rate", str(RATE), "--duration",
            str(int(seconds)), "--format", "raw", "--nonblocking", "--full-filenames", "-o", str(out)]
    # "cpu": only the thread holding the GIL (--gil), i.e. Python actually running;
    # "wall": every thread, idle ones too (--idle).
    argv.append("--idle" if idle else "--gil")
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(str(out) + ".log", "wb"))


def parse(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    if not path.exists():
        return stacks
    for line in path.read_text(errors="replace").splitlines():
        frames, _, count = line.rpartition(" ")
        if frames and count.isdigit():
            stacks.append((frames.split(";"), int(count)))
    return stacks


def short(frame: str) -> str:
    """`func (file:line)` with the file relative to the project or to site-packages."""
    m = _FRAME.match(frame)
    if not m:
        return frame
    path = m.group("file")
    for marker in ("site-packages/", str(stack.ROOT) + "/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{m.group('func')} ({path})"


def _is(frame: str, func: str, file_suffix: str) -> bool:
    """Is `frame` the function `func` (or a method/closure named so) of a file ending in `file_suffix`?"""
    m = _FRAME.match(frame)
    if not m or not m.group("file").endswith(file_suffix):
        return False
    name = m.group("func")
    return name == func or name.endswith("." + func)


def children(stacks, func: str, file_suffix: str) -> tuple[int, Counter]:
    """Samples whose stack passes through func@file, grouped by the frame right below it."""
    total, below = 0, Counter()
    for frames, count in stacks:
        for i, frame in enumerate(frames):
            if _is(frame, func, file_suffix):
                total += count
                child = short(frames[i + 1]) if i + 1 < len(frames) else "(its own code)"
                below[child] += count
                break
    return total, below


def inclusive(stacks, within=None, project_only=True, top=25) -> list[tuple[str, int]]:
    """Functions by the samples they appear in (once per stack), optionally within a frame."""
    counts = Counter()
    for frames, count in stacks:
        if within:
            # Only what runs below `within` (its callers are the same in every stack).
            start = next((i for i, f in enumerate(frames) if _is(f, *within)), None)
            if start is None:
                continue
            frames = frames[start + 1:]
        seen = set()
        for frame in frames:
            name = short(frame)
            if project_only and not re.search(r"\((ingress|shared|workers)/", name):
                continue
            if name not in seen:
                seen.add(name)
                counts[name] += count
    return counts.most_common(top)


def leaves(stacks, within=None, top=20) -> list[tuple[str, int]]:
    counts = Counter()
    for frames, count in stacks:
        if within and not any(_is(f, *within) for f in frames):
            continue
        counts[short(frames[-1])] += count
    return counts.most_common(top)


# Frames whose insides are worth a table of their own.
DETAILS = (
    ("record", "shared/deliveries.py"),
    ("enqueue", "shared/queue.py"),
    ("enforce", "ingress/limits.py"),
    ("begin_attempt", "shared/deliveries.py"),
    ("apply", "shared/deliveries.py"),
    ("transaction", "workers/context.py"),
    ("Evloop.start", "celery/worker/consumer/consumer.py"),
)


def _table(counter_items, total: int, deliveries: int, limit: int = 15) -> list[dict]:
    rows = []
    for name, count in list(counter_items)[:limit]:
        rows.append({"frame": name, "samples": count, "pct": round(100 * count / total, 1) if total else None,
                     "ms_per_delivery": round(count / RATE * 1000 / deliveries, 3) if deliveries else None})
    return rows


def summarize(path: Path, root: tuple[str, str], deliveries: int, wall: bool) -> dict:
    stacks = parse(path)
    total = sum(c for _, c in stacks)
    inside, below = children(stacks, *root)
    out = {
        "file": str(path), "samples": total, "deliveries": deliveries,
        "root": f"{root[0]} ({root[1]})", "root_samples": inside,
        "root_pct_of_samples": round(100 * inside / total, 1) if total else None,
        "root_ms_per_delivery": round(inside / RATE * 1000 / deliveries, 3) if deliveries else None,
        "children": _table(below.most_common(), inside, deliveries),
    }
    out["details"] = {}
    for func, file_suffix in DETAILS:
        n, below = children(stacks, func, file_suffix)
        if n:
            out["details"][f"{func} ({file_suffix})"] = {
                "ms_per_delivery": round(n / RATE * 1000 / deliveries, 3) if deliveries else None,
                "inclusive": _table(inclusive(stacks, within=(func, file_suffix), project_only=False, top=60)[:60],
                                    n, deliveries, 60),
                "self": _table(leaves(stacks, within=(func, file_suffix)), n, deliveries, 12),
            }
    out["top_self_in_root"] = _table(leaves(stacks, within=root), inside, deliveries, 15)
    if not wall:
        out["top_self"] = _table(leaves(stacks), total, deliveries, 20)
        out["top_inclusive_project"] = _table(inclusive(stacks), total, deliveries, 25)
        out["top_inclusive_all"] = _table(inclusive(stacks, project_only=False, top=40), total, deliveries, 40)
    return out


def _under_load(bench, name: str, binary: str, pid: int, seconds: float, idle: bool, start_load, count) -> tuple[Path, int]:
    out = bench.workdir / f"pyspy-{name}.txt"
    before = count()
    load = start_load()
    time.sleep(1.0)
    spy = record(binary, pid, seconds, out, idle)
    spy.wait(timeout=seconds + 60)
    deliveries = count() - before
    if load is not None:
        load.join()
    return out, deliveries


def run(bench) -> dict:
    a = bench.args
    binary = py_spy(install=not a.no_install)
    seconds = a.profile_seconds
    result: dict = {"rate_hz": RATE, "seconds": seconds}
    web_pid, worker = bench.procs["web"].pid, bench.procs["worker"]

    def wrk_thread(name, duration):
        t = threading.Thread(target=bench.run_wrk, args=(bench.port, name), kwargs={"seconds": duration}, daemon=True)
        t.start()
        return t

    recorded = lambda: bench.counts()[0]  # noqa: E731
    applied = lambda: bench.counts()[1]  # noqa: E731

    bench.log(f"profile: web under wrk, worker paused ({seconds:g} s cpu + {seconds:g} s wall)")
    worker.pause()
    try:
        for mode in ("cpu", "wall"):
            path, n = _under_load(bench, f"web-{mode}", binary, web_pid, seconds, mode == "wall",
                                  lambda: wrk_thread(f"prof-{mode}", seconds + 2), recorded)
            # Per delivery over the recording window (deliveries recorded while it ran, ±1 s).
            n = max(1, int(n * seconds / (seconds + 2)))
            result[f"web_{mode}"] = summarize(path, ("receive", "ingress/hooks.py"), n, mode == "wall")
            result[f"web_{mode}"]["request"] = summarize(path, ("handle_request", "gunicorn/workers/base_async.py"), n,
                                                         True)
    finally:
        worker.resume()

    bench.log(f"profile: worker applying the backlog ({seconds:g} s cpu + {seconds:g} s wall)")
    for mode in ("cpu", "wall"):
        if bench.unapplied() < 50:
            worker.pause()
            bench.run_wrk(bench.port, f"prof-backlog-{mode}", count=int(60 * seconds))
            worker.resume()
        path, n = _under_load(bench, f"worker-{mode}", binary, worker.pid, seconds, mode == "wall", lambda: None, applied)
        result[f"worker_{mode}"] = summarize(path, ("apply", "workers/deliveries.py"), n, mode == "wall")
        result[f"worker_{mode}"]["task"] = summarize(path, ("fast_trace_task", "celery/app/trace.py"), n, True)
    bench.wait_applied()

    bench.log("profile: round trips per delivery (worker and beat paused)")
    beat = bench.procs["beat"]
    worker.pause()
    beat.pause()
    try:
        proc = subprocess.run([sys.executable, "-m", "bench.roundtrips", "200"], cwd=stack.ROOT, env=bench.env,
                              capture_output=True, text=True, timeout=300)
    finally:
        beat.resume()
        worker.resume()
    for line in proc.stdout.splitlines():
        if line.startswith("ROUNDTRIPS "):
            result["roundtrips"] = json.loads(line[len("ROUNDTRIPS "):])
    if "roundtrips" not in result:
        result["roundtrips_error"] = (proc.stdout + proc.stderr)[-3000:]
    bench.wait_applied()
    return result


def render(p: dict) -> str:
    lines = [f"## Profile (py-spy {p['rate_hz']} Hz, {p['seconds']:g} s per recording)"]
    for key, title in (("web_cpu", "web, CPU (thread holding the GIL)"), ("web_wall", "web, wall (all threads)"),
                       ("worker_cpu", "worker, CPU"), ("worker_wall", "worker, wall")):
        s = p.get(key)
        if not s:
            continue
        lines += ["", f"### {title}: {s['root']} = {s['root_pct_of_samples']} % of samples, "
                      f"{s['root_ms_per_delivery']} ms per delivery ({s['deliveries']} deliveries)", "",
                  "| below it | % | ms/delivery |", "| --- | --- | --- |"]
        lines += [f"| {r['frame']} | {r['pct']} | {r['ms_per_delivery']} |" for r in s["children"][:12]]
        outer = s.get("request") or s.get("task")
        if outer:
            lines += ["", f"whole {outer['root']}: {outer['root_ms_per_delivery']} ms per delivery; below it: "
                      + ", ".join(f"{r['frame']} {r['pct']} %" for r in outer["children"][:6])]
        if s.get("top_self"):
            lines += ["", "top self (leaf) frames: " + "; ".join(f"{r['frame']} {r['pct']} %" for r in s["top_self"][:10])]
    rt = p.get("roundtrips")
    if rt:
        for side, title in (("ingress_per_delivery", "ingress"), ("worker_task_per_delivery", "worker task")):
            r = rt[side]
            lines += ["", f"### Round trips per delivery, {title}: PostgreSQL {r['postgres_round_trips']}, "
                          f"Redis {r['redis_requests']}",
                      "PostgreSQL: " + ", ".join(f"{k} {v}" for k, v in r["postgres"].items()),
                      "Redis commands: " + ", ".join(f"{k} {v}" for k, v in r["redis_commands"].items())]
    elif p.get("roundtrips_error"):
        lines += ["", "round trips: failed: " + p["roundtrips_error"][-500:]]
    return "\n".join(lines)


if __name__ == "__main__":
    # Re-render a stored result: python -m bench.profile bench/results/latest.json
    data = json.loads(Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results/latest.json").read_text())
    print(render(data["profile"]))
    os._exit(0)
