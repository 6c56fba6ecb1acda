"""A/B of the web alone: CPU per accepted callback under wrk, app against app.

    .venv/bin/python -m bench.ab                      # the baseline app, then the service
    .venv/bin/python -m bench.ab --rounds 3 "bench.baseline_app:create_app()" \\
        "ingress:create_app()" "bench.standins:answering()"

Each app runs alone under the Procfile's web command on a fresh database and a private
Redis, no worker: 2 s of warm-up, then wrk (32 connections) for --seconds while the
gunicorn tree's CPU is read. What bench/README.md's per-change figures come from; quicker
and steadier than run.py for one change to the web (a run of two apps takes about 40 s).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

from bench import stack, wrk
from bench.load import HOOK
from bench.run import NO_REFUSAL_LIMIT

SECRET = b"ab-secret"


def measure(app: str, env: dict, workdir: Path, seconds: float, connections: int) -> tuple[float, float]:
    """(accepted/s, web CPU ms per accepted callback) of one app."""
    port = stack.free_port()
    argv = stack.procfile(dict(env, PORT=str(port)))["web"]
    web = stack.Proc("web", [*argv[:-1], app], dict(env, PORT=str(port)), workdir)
    try:
        stack.wait_http(f"http://127.0.0.1:{port}/healthz", proc=web)
        url = f"http://127.0.0.1:{port}{HOOK}"
        bodies = wrk.write_bodies(workdir / "bodies.tsv", SECRET, [f"ab-{time.time_ns()}-{k}" for k in range(500)])
        wrk.run(wrk.ensure_wrk(False), url, bodies, f"warm{time.time_ns()}", workdir, seconds=2, log_name="wrk-warm")
        before = web.cpu_seconds()
        result = wrk.run(wrk.ensure_wrk(False), url, bodies, f"ab{time.time_ns()}", workdir, seconds=seconds,
                         connections=connections, log_name="wrk-ab")
        used = web.cpu_seconds() - before
    finally:
        web.stop()
    if result["failed"] or not result["ok"]:
        raise RuntimeError(f"{app}: {result['failed']} refused, {result['ok']} accepted; see {workdir}")
    return result["ok_per_s"], used * 1000 / result["ok"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("apps", nargs="*", default=["bench.baseline_app:create_app()", "ingress:create_app()"])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--pg-admin-url", default=os.environ.get("BENCH_PG_ADMIN_URL",
                                                                "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-ab-"))
    database, redis = stack.Database(args.pg_admin_url), stack.PrivateRedis(workdir)
    redis.start()
    database.create()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("N8N_", "WEBHOOK_", "RATE_LIMIT_", "BENCH_"))}
        env.update(DATABASE_URL=database.url, REDIS_URL=redis.url(), N8N_WEBHOOK_SECRET=SECRET.decode(),
                   RATE_LIMIT_PER_SENDER=NO_REFUSAL_LIMIT, RATE_LIMIT_PER_TOKEN=NO_REFUSAL_LIMIT)
        subprocess.run(stack.procfile(env)["release"], cwd=stack.ROOT, env=env, check=True, capture_output=True)
        figures: dict[str, list[tuple[float, float]]] = {app: [] for app in args.apps}
        for _ in range(args.rounds):
            for app in args.apps:
                figures[app].append(measure(app, env, workdir, args.seconds, args.connections))
                print(f"{app:40s} {figures[app][-1][0]:8.1f}/s  {figures[app][-1][1]:.3f} ms of web CPU each", flush=True)
    finally:
        database.drop()
        redis.stop()
    first = sum(rate for rate, _ in figures[args.apps[0]]) / args.rounds
    print(f"\n| app | accepted/s | web CPU ms per callback | against {args.apps[0]} |\n| --- | --- | --- | --- |")
    for app, runs in figures.items():
        rate, cpu = (sum(values) / len(runs) for values in zip(*runs))
        print(f"| `{app}` | {rate:.0f} | {cpu:.3f} | {rate / first:.2f}x |")
    print(f"\nlogs: {workdir}")


if __name__ == "__main__":
    main()
