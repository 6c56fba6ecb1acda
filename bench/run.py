#!/usr/bin/env python
"""Benchmark (issue #6): ingress and pipeline against their baselines, in one run.

    .venv/bin/python bench/run.py            # full: 10k/50k memory checkpoints, 20 000-callback burst
    .venv/bin/python bench/run.py --quick    # the same phases, smaller, under 3 minutes
    .venv/bin/python bench/run.py --help     # every knob (also settable as BENCH_* variables)

Starts its own stack (gunicorn, Celery worker, beat: the Procfile's commands) on a fresh
PostgreSQL database (created, migrated with alembic, dropped) and a private redis-server,
prints a markdown table and writes bench/results/latest.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import runpy
import secrets
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import load, stack, wrk  # noqa: E402
from bench.load import percentile  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TARGETS = {
    "ingress_ratio": 0.6,
    "pipeline_ratio": 0.5,
    "accept_to_visible_p99_ms": 250,
    "burst_lost": 0,
    "rss_growth_pct": 10,
}
# High enough never to refuse a benchmark request, so the limiter's Redis round trip is still paid.
NO_REFUSAL_LIMIT = "1000000000/60"


# --- configuration ----------------------------------------------------------------------


def _env(name, default, cast=str):
    value = os.environ.get(f"BENCH_{name.upper()}")
    return default if value in (None, "") else cast(value)


FULL = dict(
    ingress_seconds=30, warmup_seconds=5, pipeline_seconds=60, burst=20000,
    memory_checkpoints="10000,50000", profile_seconds=15,
)
QUICK = dict(
    ingress_seconds=6, warmup_seconds=2, pipeline_seconds=10, burst=2000,
    memory_checkpoints="2000,8000", profile_seconds=6,
)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Every option can also be given as BENCH_<OPTION> (e.g. BENCH_INGRESS_SECONDS=60).",
    )
    p.add_argument("--quick", action="store_true", default=_env("quick", False, lambda v: v not in ("0", "")),
                   help="smaller figures (6 s wrk runs, 10 s at 100/s, 2k burst, 2k/8k memory checkpoints): under 3 minutes")
    p.add_argument("--ingress-seconds", type=float, help="each wrk measurement (full 30, quick 8)")
    p.add_argument("--warmup-seconds", type=float, help="wrk warm-up before measuring (full 5, quick 2)")
    p.add_argument("--wrk-threads", type=int, default=_env("wrk_threads", 2, int))
    p.add_argument("--wrk-connections", type=int, default=_env("wrk_connections", 32, int))
    p.add_argument("--pipeline-rate", type=float, default=_env("pipeline_rate", 100.0, float),
                   help="deliveries per second of the open-loop sender (100)")
    p.add_argument("--pipeline-seconds", type=float, help="open-loop duration (full 60, quick 15)")
    p.add_argument("--poll-interval-ms", type=float, default=_env("poll_interval_ms", 20.0, float),
                   help="pollers GET the job this often until the callback shows (20)")
    p.add_argument("--poll-every", type=int, default=_env("poll_every", 4, int),
                   help="trace one delivery in this many: only those are polled until visible (4)")
    p.add_argument("--burst", type=int, help="callbacks in the zero-loss burst (full 20000, quick 2000)")
    p.add_argument("--memory-checkpoints", help="deliveries applied at which RSS is read (full 10000,50000)")
    p.add_argument("--profile", action="store_true", default=_env("profile", False, lambda v: v not in ("0", "")),
                   help="then profile (py-spy) web and worker under load and count round trips per delivery")
    p.add_argument("--profile-seconds", type=float, help="each py-spy recording (full 15, quick 6)")
    p.add_argument("--only", default=_env("only", ""),
                   help="comma-separated subset of phases: pipeline,ingress,burst,memory (default: all)")
    p.add_argument("--web-concurrency", default=_env("web_concurrency", None),
                   help="WEB_CONCURRENCY for gunicorn (unset: the service's default)")
    p.add_argument("--web-connections", default=_env("web_connections", None),
                   help="WEB_CONNECTIONS, gevent's worker_connections (unset: default)")
    p.add_argument("--worker-concurrency", default=_env("worker_concurrency", None),
                   help="WORKER_CONCURRENCY for the Celery worker (unset: the Procfile's default)")
    p.add_argument("--pg-admin-url", default=os.environ.get(
        "BENCH_PG_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"))
    p.add_argument("--wait-quiet", type=float, default=_env("wait_quiet", 300.0, float),
                   help="before starting, wait up to this many seconds for the machine to be idle (300)")
    p.add_argument("--quiet-cores", type=float, default=_env("quiet_cores", 0.3, float),
                   help="idle means fewer cores than this busy with other work (0.3)")
    p.add_argument("--keep", action="store_true", help="do not drop the database at the end (for inspection)")
    p.add_argument("--no-install", action="store_true", help="never install wrk/py-spy, only say how")
    p.add_argument("--output", default=str(RESULTS / "latest.json"))
    args = p.parse_args(argv)
    mode = QUICK if args.quick else FULL
    for key, value in mode.items():
        if getattr(args, key) is None:
            cast = type(value)
            setattr(args, key, _env(key, value, cast))
    args.memory_checkpoints = [int(x) for x in str(args.memory_checkpoints).split(",") if x.strip()]
    args.only = {x.strip() for x in args.only.split(",") if x.strip()}
    return args


# --- the machine ------------------------------------------------------------------------


def machine() -> dict:
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    try:
        nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    except OSError:
        nproc = str(len(os.sched_getaffinity(0)))

    def git(*a):
        try:
            return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    versions = {}
    for name in ("flask", "werkzeug", "gunicorn", "celery", "kombu", "redis", "sqlalchemy", "psycopg2-binary"):
        try:
            from importlib.metadata import version
            versions[name] = version(name)
        except Exception:
            pass
    dirty = [line[3:] for line in git("status", "--porcelain").splitlines() if not line[3:].startswith("bench/")]
    return {
        "nproc": nproc,
        "cpu_model": model,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": versions,
        "git_commit": git("rev-parse", "--short", "HEAD"),
        "git_uncommitted_files_outside_bench": len(dirty),
    }


def effective_web_config(env: dict) -> dict:
    saved = dict(os.environ)
    try:
        os.environ.update(env)
        conf = runpy.run_path(str(ROOT / "ingress" / "gunicorn_conf.py"))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return {k: conf.get(k) for k in ("workers", "worker_class", "worker_connections", "timeout", "accesslog")}


# --- the run ----------------------------------------------------------------------------


class Bench:
    def __init__(self, args):
        self.args = args
        self.run_id = "b" + secrets.token_hex(3)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        self.workdir = RESULTS / f"run-{stamp}-{self.run_id}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.secret = ("bench-secret-" + secrets.token_hex(8)).encode()
        self.results: dict = {"run_id": self.run_id, "started_at": stamp, "workdir": str(self.workdir)}
        self.procs: dict[str, stack.Proc] = {}
        self.redis = stack.PrivateRedis(self.workdir)
        self.db = stack.Database(args.pg_admin_url)
        self.samples: list[dict] = []
        self._sampling = threading.Event()
        self.t0 = time.monotonic()

    def log(self, message: str) -> None:
        print(f"[{time.monotonic() - self.t0:7.1f}s] {message}", flush=True)

    # -- setup and teardown

    def wait_quiet(self, phase: str = "start", limit: float | None = None) -> None:
        """Other work on the machine takes cores from the service: wait for it to stop (bounded).

        Called before the run and before each measured phase, when the bench's own stack is
        idle (beat's sweeps aside), so whatever keeps the cores busy is someone else's.
        """
        a = self.args
        limit = a.wait_quiet if limit is None else min(limit, a.wait_quiet)
        deadline = time.monotonic() + limit
        busy = stack.busy_cores(2)
        while busy > a.quiet_cores and time.monotonic() < deadline:
            self.log(f"the machine is busy ({busy:.2f} cores used by other processes); waiting before {phase} "
                     f"(up to {max(0, deadline - time.monotonic()):.0f} s more, --wait-quiet)")
            time.sleep(5)
            busy = stack.busy_cores(2)
        self.results["machine"].setdefault("busy_cores_before", {})[phase] = round(busy, 2)
        if busy > a.quiet_cores:
            self.log(f"WARNING: {phase} starts on a busy machine ({busy:.2f} cores in use): its figures will be low")

    def setup(self) -> None:
        a = self.args
        self.wrk = wrk.ensure_wrk(install=not a.no_install)
        self.redis.start()
        self.db.create()
        self.port = stack.free_port()
        env = {k: v for k, v in os.environ.items()
               if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "PORT", "PUBLIC_BASE_URL"}
               and not k.startswith(("N8N_", "WEBHOOK_", "RATE_LIMIT_", "BENCH_"))}
        env.update(
            DATABASE_URL=self.db.url,
            REDIS_URL=self.redis.url(0),
            N8N_WEBHOOK_SECRET=self.secret.decode(),
            PORT=str(self.port),
            PUBLIC_BASE_URL=f"http://127.0.0.1:{self.port}",
            VAR_DIR=str(self.workdir / "var"),
            PYTHONUNBUFFERED="1",
            RATE_LIMIT_PER_TOKEN=NO_REFUSAL_LIMIT,
            RATE_LIMIT_PER_SENDER=NO_REFUSAL_LIMIT,
        )
        for name, value in (("WEB_CONCURRENCY", a.web_concurrency), ("WEB_CONNECTIONS", a.web_connections),
                            ("WORKER_CONCURRENCY", a.worker_concurrency)):
            if value:
                env[name] = str(value)
        self.env = env
        self.commands = stack.procfile(env)
        self.results["config"] = {
            "web": self.commands["web"], "worker": self.commands["worker"],
            "web_config": effective_web_config(env),
            "worker_concurrency": int(self.commands["worker"][self.commands["worker"].index("--concurrency") + 1]),
            "wrk": {"threads": a.wrk_threads, "connections": a.wrk_connections},
            "quick": a.quick,
            "args": {k: v for k, v in vars(a).items() if k not in ("pg_admin_url",)},
            "env_overrides": {"RATE_LIMIT_PER_TOKEN": NO_REFUSAL_LIMIT, "RATE_LIMIT_PER_SENDER": NO_REFUSAL_LIMIT},
        }
        self.results["config"]["args"]["only"] = sorted(a.only)
        self.log(f"database {self.db.name}, redis :{self.redis.port}, web :{self.port}, logs {self.workdir}")
        release = subprocess.run(self.commands["release"], cwd=ROOT, env=env, capture_output=True, text=True)
        if release.returncode:
            raise RuntimeError(f"migrations failed:\n{release.stdout}\n{release.stderr}")
        self.start_web()
        self.start_worker()
        beat = stack.replace_option(self.commands["beat"], "--schedule", str(self.workdir / "celerybeat-schedule"))
        self.procs["beat"] = stack.Proc("beat", beat, env, self.workdir)
        flask = str(stack.BIN / "flask")
        token = subprocess.run([flask, "--app", "ingress", "create-token", "--user", "bench"], cwd=ROOT, env=env,
                               capture_output=True, text=True)
        if token.returncode:
            raise RuntimeError(f"create-token failed:\n{token.stderr}")
        self.token = token.stdout.strip().splitlines()[-1]
        self.conn = self.db.connect()

    def start_web(self) -> None:
        self.procs["web"] = stack.Proc("web", self.commands["web"], self.env, self.workdir)
        stack.wait_http(f"http://127.0.0.1:{self.port}/healthz", proc=self.procs["web"])

    def start_worker(self) -> None:
        self.procs["worker"] = stack.Proc("worker", self.commands["worker"], self.env, self.workdir)
        self.procs["worker"].wait_log(b"ready.")

    def teardown(self) -> None:
        self._sampling.set()
        for proc in list(self.procs.values()):
            try:
                proc.stop()
            except Exception as exc:  # keep tearing down
                print(f"stopping {proc.name}: {exc}", file=sys.stderr)
        try:
            if getattr(self, "conn", None):
                self.conn.close()
        except Exception:
            pass
        if not self.args.keep:
            self.db.drop()
        self.redis.stop()

    # -- database figures

    def q(self, sql: str, *params):
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()

    def counts(self) -> tuple[int, int]:
        recorded, applied = self.q("SELECT count(*), count(applied_at) FROM deliveries")[0]
        return recorded, applied

    def unapplied(self) -> int:
        return self.q("SELECT count(*) FROM deliveries WHERE applied_at IS NULL")[0][0]

    def wait_applied(self, timeout: float = 900, interval: float = 0.1) -> float:
        """Seconds until every recorded delivery is applied.

        Polls with an EXISTS (cheap: stops at the first unapplied row) and counts the rest
        only every few seconds, so the benchmark's own queries cost PostgreSQL little.
        """
        started = time.monotonic()
        last, last_change, last_count = None, started, 0.0
        while True:
            pending = self.q("SELECT EXISTS (SELECT 1 FROM deliveries WHERE applied_at IS NULL)")[0][0]
            now = time.monotonic()
            if not pending:
                return now - started
            if now - last_count > 5:
                last_count = now
                left = self.unapplied()
                if left != last:
                    last, last_change = left, now
                if now - started > timeout or now - last_change > 120:
                    raise TimeoutError(f"{left} deliveries still unapplied after {now - started:.0f} s")
            time.sleep(interval)

    # -- memory sampler

    def rss(self) -> dict:
        web, worker = self.procs["web"].rss_kb(), self.procs["worker"].rss_kb()
        return {"web_kb": web["total_kb"], "web_processes": web["processes"], "web_max_child_kb": web["max_child_kb"],
                "worker_kb": worker["total_kb"], "worker_processes": worker["processes"],
                "worker_max_child_kb": worker["max_child_kb"]}

    def start_sampler(self) -> None:
        conn = self.db.connect()

        def loop():
            while not self._sampling.wait(2.0):
                try:
                    with conn.cursor() as cur:
                        cur.execute("SELECT count(*), count(applied_at) FROM deliveries")
                        recorded, applied = cur.fetchone()
                    self.samples.append({"t": round(time.monotonic() - self.t0, 1), "recorded": recorded,
                                         "applied": applied, **self.rss()})
                except Exception as exc:  # the sampler must never stop the run
                    self.samples.append({"t": round(time.monotonic() - self.t0, 1), "error": str(exc)})
            conn.close()

        threading.Thread(target=loop, daemon=True, name="rss-sampler").start()

    # -- CPU accounting: which process group burns the cores during a phase

    def cpu_snapshot(self, extra: dict | None = None) -> dict:
        snap = {name: proc.cpu_seconds() for name, proc in self.procs.items()}
        pg = stack.postgres_cpu(self.db.name)
        snap["postgres"] = pg["ours"]
        snap["postgres_server"] = pg["server"]
        snap["redis"] = stack.cpu_seconds(self.redis.proc.pid)
        snap["bench_and_wrk"] = stack.self_cpu_seconds()
        for name, proc in (extra or {}).items():
            snap[name] = proc.cpu_seconds()
        snap["_machine"] = stack.machine_busy_seconds()
        snap["_wall"] = time.monotonic()
        try:
            snap["_redis"] = self.redis_commands()
        except Exception:  # figures for the report, never a reason to stop
            pass
        return snap

    def redis_commands(self) -> dict:
        import redis as redis_lib

        client = redis_lib.Redis.from_url(self.redis.url(0))
        try:
            return {k.removeprefix("cmdstat_"): v["calls"] for k, v in client.info("commandstats").items()}
        finally:
            client.close()

    @staticmethod
    def cpu_delta(before: dict, after: dict, deliveries: int) -> dict:
        wall = after["_wall"] - before["_wall"]
        out = {"wall_s": round(wall, 2)}
        ours = 0.0
        for name in after:
            if name.startswith("_") or name not in before:
                continue
            used = after[name] - before[name]
            ours += used
            out[name] = {"cores": round(used / wall, 2) if wall else None,
                         "cpu_ms_per_delivery": round(used * 1000 / deliveries, 3) if deliveries else None}
        if wall and "_machine" in before:
            busy = after["_machine"] - before["_machine"]
            out["machine_busy_cores"] = round(busy / wall, 2)
            # Whatever else ran on the machine meanwhile (other people's tests, ...): it takes
            # cores from the service and lowers every figure of this phase.
            out["others_on_machine_cores"] = round(max(0.0, busy - ours) / wall, 2)
        if deliveries and "_redis" in before and "_redis" in after:
            calls = {k: v - before["_redis"].get(k, 0) for k, v in after["_redis"].items()}
            calls = {k: round(v / deliveries, 2) for k, v in sorted(calls.items(), key=lambda kv: -kv[1])
                     if v and k != "info"}
            out["redis_commands_per_delivery"] = calls
            out["redis_commands_per_delivery_total"] = round(sum(calls.values()), 2)
        return out

    # -- phases

    def seed(self) -> None:
        """Jobs owned by user `bench` (auto-created by a first callback), for the pollers."""
        n = max(200, int(self.args.pipeline_rate * self.args.pipeline_seconds / 90) + 1)
        self.jobs = [f"{self.run_id}-job-{k}" for k in range(n)]
        items = [(f"{self.run_id}-seed-{k}", load.callback_body(job, 0, "seed")) for k, job in enumerate(self.jobs)]
        statuses = asyncio.run(load.send_all("127.0.0.1", self.port, self.secret, items))
        if statuses.get("200", 0) != len(items):
            raise RuntimeError(f"the service did not accept the seed callbacks ({statuses}):\n{self.web_errors()}")
        self.wait_applied()
        self.log(f"seeded {n} jobs ({statuses})")
        # Bodies for wrk: 500 jobs of their own (auto-created on their first callback).
        self.wrk_jobs = [f"{self.run_id}-wjob-{k}" for k in range(500)]

    def wrk_bodies(self) -> Path:
        return wrk.write_bodies(self.workdir / "bodies.tsv", self.secret, self.wrk_jobs)

    def run_wrk(self, port: int, name: str, seconds: float = 0, count: int = 0) -> dict:
        a = self.args
        result = wrk.run(
            self.wrk, f"http://127.0.0.1:{port}{load.HOOK}", self.wrk_bodies(), f"{self.run_id}-{name}",
            self.workdir, seconds=seconds, count=count, threads=a.wrk_threads, connections=a.wrk_connections,
            log_name=f"wrk-{name}",
        )
        if result["ok"] == 0 or result["failed"] > result["ok"]:
            raise RuntimeError(f"wrk {name}: {result['ok']} accepted, {result['failed']} refused, errors "
                               f"{result['errors']}: the service is not accepting callbacks\n{self.web_errors()}")
        return result

    def web_errors(self) -> str:
        """The end of the first traceback in the web log, if any (a broken service fails loudly)."""
        text = self.procs["web"].log().decode(errors="replace") if "web" in self.procs else ""
        at = text.find("Traceback")
        return text[at:at + 3000] if at >= 0 else text[-1500:]

    def phase_pipeline_latency(self) -> None:
        a = self.args
        self.log(f"pipeline: open loop at {a.pipeline_rate:g}/s for {a.pipeline_seconds:g} s, "
                 f"polling one delivery in {a.poll_every} every {a.poll_interval_ms:g} ms")
        before = self.cpu_snapshot()
        result = asyncio.run(load.open_loop(
            "127.0.0.1", self.port, self.secret, self.token, self.jobs, a.pipeline_rate, a.pipeline_seconds,
            f"{self.run_id}-pipe", poll_interval=a.poll_interval_ms / 1000, poll_every=a.poll_every,
        ))
        report = load.open_loop_report(result, a.pipeline_rate, a.poll_interval_ms / 1000)
        report["cpu"] = self.cpu_delta(before, self.cpu_snapshot(), report["accepted"])
        self.wait_applied()
        # The database's own view: received_at -> claimed by a worker (Delivery.apply_ms).
        rows = [r[0] for r in self.q(
            "SELECT apply_ms FROM deliveries WHERE delivery_id LIKE %s AND apply_ms IS NOT NULL",
            f"{self.run_id}-pipe-%")]
        report["db_received_to_claimed_ms"] = {"p50": percentile(rows, 50), "p99": percentile(rows, 99),
                                               "max": max(rows, default=None)}
        self.results["pipeline_latency"] = report
        v = report["accept_to_visible_ms"]
        self.log(f"pipeline: accept-to-visible p50 {v['p50']} ms, p99 {v['p99']} ms "
                 f"({report['visible']}/{report['traced']} traced visible, {report['gets']} GETs)")

    def phase_get_cost(self) -> None:
        """What one poll costs: wrk GETs /api/jobs/<id> over the seeded jobs (worker paused,
        so nothing changes): plain (200, the job and its events) and with If-None-Match (304)."""
        a = self.args
        seconds = max(3.0, a.ingress_seconds / 3)

        async def etags():
            pool = load.HttpPool("127.0.0.1", self.port, size=8)
            out = []
            for job in self.jobs:
                status, headers, body = await pool.request("GET", f"/api/jobs/{job}",
                                                           {"Authorization": f"Bearer {self.token}"})
                out.append((job, headers.get("etag", ""), len(body)))
            pool.close()
            return out

        jobs = asyncio.run(etags())
        path = self.workdir / "jobs.tsv"
        path.write_text("".join(f"{job}\t{etag}\n" for job, etag, _ in jobs))
        out = {"jobs": len(jobs), "mean_body_bytes": round(sum(n for *_, n in jobs) / max(1, len(jobs)))}
        worker = self.procs["worker"]
        worker.pause()
        try:
            for mode in ("full", "match"):
                before = self.cpu_snapshot()
                r = wrk.run(self.wrk, f"http://127.0.0.1:{self.port}", path, "", self.workdir, seconds=seconds,
                            threads=a.wrk_threads, connections=a.wrk_connections, log_name=f"wrk-get-{mode}",
                            script=wrk.GET_LUA, script_args=[str(path), self.token, mode])
                r["cpu"] = self.cpu_delta(before, self.cpu_snapshot(), r["ok"])
                out["304" if mode == "match" else "200"] = r
        finally:
            worker.resume()
        self.results["get_cost"] = out
        self.log(f"GET /api/jobs/<id>: {out['200']['ok_per_s']}/s answering 200 "
                 f"(web {out['200']['cpu']['web']['cpu_ms_per_delivery']} ms CPU each), "
                 f"{out['304']['ok_per_s']}/s answering 304 (web {out['304']['cpu']['web']['cpu_ms_per_delivery']} ms)")

    def phase_ingress(self) -> None:
        a = self.args
        out: dict = {}
        # 1. the baseline app under the same gunicorn command and configuration
        port = stack.free_port()
        env = {**self.env, "PORT": str(port)}
        argv = [("bench.baseline_app:create_app()" if x == "ingress:create_app()" else x) for x in self.commands["web"]]
        if argv == self.commands["web"]:
            raise RuntimeError(f"cannot find the app in the Procfile's web command: {argv}")
        base = stack.Proc("baseline", argv, env, self.workdir)
        self.procs["baseline"] = base
        try:
            stack.wait_http(f"http://127.0.0.1:{port}/healthz", proc=base)
            self.run_wrk(port, "base-warm", seconds=a.warmup_seconds)
            before = self.cpu_snapshot()
            self.log(f"ingress: baseline app, wrk {a.ingress_seconds:g} s")
            out["baseline"] = self.run_wrk(port, "base", seconds=a.ingress_seconds)
            out["baseline"]["cpu"] = self.cpu_delta(before, self.cpu_snapshot(), out["baseline"]["ok"])
        finally:
            base.stop()
            self.procs.pop("baseline", None)
        self.log(f"ingress: baseline {out['baseline']['ok_per_s']}/s, p50 {out['baseline']['latency_ms']['p50']} ms")

        # 2. the service, worker paused: the ingress alone on the machine, as the baseline was
        worker = self.procs["worker"]
        worker.pause()
        try:
            recorded_before = self.counts()[0]
            before = self.cpu_snapshot()
            self.log(f"ingress: service (worker paused), wrk {a.ingress_seconds:g} s")
            r = self.run_wrk(self.port, "svc", seconds=a.ingress_seconds)
            r["cpu"] = self.cpu_delta(before, self.cpu_snapshot(), r["ok"])
            r["recorded_in_db"] = self.counts()[0] - recorded_before
            out["service"] = r
            backlog = self.unapplied()
        finally:
            # 3. pipeline throughput: the backlog the ingress just recorded, applied by the worker
            t_resume = time.monotonic()
            before = self.cpu_snapshot()
            worker.resume()
        self.log(f"ingress: service {r['ok_per_s']}/s, p50 {r['latency_ms']['p50']} ms; "
                 f"draining a backlog of {backlog}")
        drain = self.wait_applied(interval=0.05)
        elapsed = time.monotonic() - t_resume
        span = self.q("SELECT extract(epoch FROM max(applied_at) - min(applied_at)), count(*) FROM deliveries "
                      "WHERE delivery_id LIKE %s", f"{self.run_id}-svc-%")[0]
        self.results["pipeline_throughput"] = {
            "backlog": backlog,
            "seconds": round(drain, 3),
            "applied_per_s": round(backlog / elapsed, 1),
            "db_span_seconds": float(span[0] or 0),
            "db_applied_per_s": round((span[1] - 1) / float(span[0]), 1) if span[0] else None,
            "cpu": self.cpu_delta(before, self.cpu_snapshot(), backlog),
        }
        self.log(f"pipeline: {backlog} applied in {drain:.1f} s = "
                 f"{self.results['pipeline_throughput']['applied_per_s']}/s")

        # 4. the service with its worker consuming: the whole stack sharing the two cores
        before = self.cpu_snapshot()
        self.log(f"ingress: service with the worker consuming, wrk {a.ingress_seconds:g} s")
        r = self.run_wrk(self.port, "svcw", seconds=a.ingress_seconds)
        left = self.unapplied()
        r["cpu"] = self.cpu_delta(before, self.cpu_snapshot(), r["ok"])
        r["unapplied_at_end"] = left
        r["drain_seconds_after"] = round(self.wait_applied(), 2)
        out["service_with_worker"] = r
        self.log(f"ingress: with worker {r['ok_per_s']}/s, p50 {r['latency_ms']['p50']} ms, "
                 f"{left} unapplied at the end, drained in {r['drain_seconds_after']} s")
        self.results["ingress"] = out

    def phase_noop_baseline(self, n: int) -> None:
        """n no-op tasks through the same broker and worker flags, timed as the backlog was."""
        import redis as redis_lib

        env = {**self.env, "REDIS_URL": self.redis.url(1)}
        argv = [("bench.noop_tasks" if x == "workers" else x) for x in self.commands["worker"]]
        proc = stack.Proc("noop-worker", argv, env, self.workdir)
        self.procs["noop-worker"] = proc
        client = redis_lib.Redis.from_url(self.redis.url(1))
        try:
            proc.wait_log(b"ready.")
            proc.pause()
            enq = subprocess.run([sys.executable, "-m", "bench.noop_tasks", "enqueue", str(n)], cwd=ROOT, env=env,
                                 capture_output=True, text=True)
            if enq.returncode:
                raise RuntimeError(f"enqueueing no-op tasks failed:\n{enq.stderr[-3000:]}")
            queued = client.llen("celery")
            before = self.cpu_snapshot({"noop-worker": proc})
            t = time.monotonic()
            proc.resume()
            while client.llen("celery") or client.hlen("unacked"):
                if time.monotonic() - t > 600:
                    raise TimeoutError("no-op tasks not consumed in 600 s")
                time.sleep(0.01)
            elapsed = time.monotonic() - t
            self.results["pipeline_baseline"] = {
                "tasks": n, "queued": queued, "seconds": round(elapsed, 3),
                "tasks_per_s": round(n / elapsed, 1), "enqueue": enq.stdout.strip(),
                "cpu": self.cpu_delta(before, self.cpu_snapshot({"noop-worker": proc}), n),
            }
        finally:
            proc.stop()
            self.procs.pop("noop-worker", None)
        self.log(f"pipeline baseline: {n} no-op tasks in {elapsed:.1f} s = {n / elapsed:.0f}/s")

    def phase_burst(self) -> None:
        n = self.args.burst
        self.log(f"burst: {n} callbacks with wrk")
        r = self.run_wrk(self.port, "burst", count=n)
        prefix = f"{self.run_id}-burst-"
        recorded_ids = {row[0] for row in self.q("SELECT delivery_id FROM deliveries WHERE delivery_id LIKE %s",
                                                  prefix + "%")}
        expected = [f"{prefix}{i}" for i in range(n)]
        missing = [i for i in expected if i not in recorded_ids]
        resent = None
        if missing:
            # Not answered 200 (socket errors, 5xx): the sender retries them, as n8n would.
            self.log(f"burst: {len(missing)} not recorded after wrk ({r['failed']} non-200, errors {r['errors']}); resending")
            bodies = [line.split("\t", 2)[2].encode() for line in
                      (self.workdir / "bodies.tsv").read_text().splitlines()]
            items = [(d, bodies[int(d.rsplit("-", 1)[1]) % len(bodies)]) for d in missing]
            resent = asyncio.run(load.send_all("127.0.0.1", self.port, self.secret, items))
        drain = self.wait_applied()
        row = self.q(
            "SELECT count(*), count(applied_at), coalesce(sum(duplicates), 0), count(*) FILTER (WHERE attempts > 1), "
            "coalesce(max(attempts), 0) FROM deliveries WHERE delivery_id LIKE %s", prefix + "%")[0]
        events = self.q(
            "SELECT count(*), count(DISTINCT e.delivery_pk) FROM job_events e JOIN deliveries d ON d.id = e.delivery_pk "
            "WHERE d.delivery_id LIKE %s", prefix + "%")[0]
        recorded, applied, duplicates, retried, max_attempts = row
        lost = n - applied
        self.results["burst"] = {
            "callbacks": n, "wrk": r, "not_recorded_after_wrk": len(missing), "resent": resent,
            "recorded": recorded, "applied": applied, "duplicate_requests": int(duplicates),
            "applied_more_than_once": events[0] - events[1], "job_events": events[0],
            "deliveries_attempted_more_than_once": retried, "max_attempts": max_attempts,
            "lost": lost, "drain_seconds_after_wrk": round(drain, 2),
            "ok": recorded == n and applied == n and events[0] == n and events[1] == n,
        }
        self.log(f"burst: {r['ok']} answered 200 in {r['seconds']} s; recorded {recorded}, applied {applied}, "
                 f"events {events[0]} (distinct {events[1]}), lost {lost}")

    def top_up(self, target: int) -> None:
        """Send deliveries until `target` have been applied in all (memory checkpoints)."""
        recorded = self.counts()[0]
        if recorded < target:
            self.log(f"memory: {target - recorded} more deliveries to reach {target}")
            self.run_wrk(self.port, f"topup{target}", count=target - recorded)
        self.wait_applied()

    def memory_report(self) -> None:
        checkpoints = self.args.memory_checkpoints
        rows = [s for s in self.samples if "error" not in s]
        points = {}
        for target in checkpoints:
            hit = next((s for s in rows if s["applied"] >= target), None)
            if hit:
                points[str(target)] = hit
        report = {"checkpoints": points, "end": {**self.rss(), "applied": self.counts()[1]}}
        if len(points) >= 2:
            first, last = points[str(checkpoints[0])], points[str(checkpoints[-1])]
            report["growth_pct"] = {
                "web": round(100 * (last["web_kb"] - first["web_kb"]) / first["web_kb"], 1),
                "worker": round(100 * (last["worker_kb"] - first["worker_kb"]) / first["worker_kb"], 1),
            }
        self.results["memory"] = report

    def sweeps_report(self) -> None:
        """Beat's sweeps expire after SWEEP_INTERVAL: how many were discarded unrun during the
        run (they have their own queue, so only while the bench holds the worker paused), and
        the longest gap between two canary runs."""
        import re

        text = self.procs["worker"].log().decode(errors="replace")
        discarded: dict[str, int] = {}
        for name in re.findall(r"Discarding revoked task: ([\w.]+)\[", text):
            discarded[name] = discarded.get(name, 0) + 1
        stamps = []
        for m in re.finditer(r"\[(\d+-\d+-\d+ \d+:\d+:\d+,\d+): INFO/\S+\] Task workers\.sweeps\.canary\[[^\]]+\] succeeded", text):
            stamps.append(datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp())
        gaps = [b - a for a, b in zip(stamps, stamps[1:])]
        self.results["sweeps"] = {"discarded_unrun": discarded, "canary_runs": len(stamps),
                                  "canary_max_gap_seconds": round(max(gaps), 1) if gaps else None}

    def run(self) -> dict:
        a = self.args
        only = a.only or {"pipeline", "ingress", "burst", "memory"}
        self.results["machine"] = machine()
        self.wait_quiet()
        self.setup()
        self.start_sampler()
        self.seed()
        self.run_wrk(self.port, "warm", seconds=a.warmup_seconds)
        self.wait_applied()
        if "pipeline" in only:
            self.wait_quiet("pipeline latency", 120)
            self.phase_pipeline_latency()
            self.phase_get_cost()
        if "memory" in only and a.memory_checkpoints:
            self.top_up(a.memory_checkpoints[0])
        if "ingress" in only:
            self.wait_quiet("ingress", 120)
            self.phase_ingress()
            self.wait_quiet("no-op baseline", 120)
            self.phase_noop_baseline(self.results["pipeline_throughput"]["backlog"])
        if "burst" in only:
            self.wait_quiet("burst", 120)
            self.phase_burst()
        if "memory" in only and a.memory_checkpoints:
            self.top_up(a.memory_checkpoints[-1])
            time.sleep(4.5)  # two more samples at rest
        self.memory_report()
        self.sweeps_report()
        if a.profile:
            from bench import profile

            self.results["profile"] = profile.run(self)
        self.results["samples"] = self.samples
        self.results["elapsed_seconds"] = round(time.monotonic() - self.t0, 1)
        return self.results


# --- report -----------------------------------------------------------------------------


def _fmt(value, unit=""):
    return "n/a" if value is None else f"{value:g}{unit}" if isinstance(value, (int, float)) else str(value)


def verdicts(results: dict) -> dict:
    v = {}
    ing = results.get("ingress")
    if ing and ing["baseline"]["ok_per_s"]:
        v["ingress_ratio"] = round(ing["service"]["ok_per_s"] / ing["baseline"]["ok_per_s"], 3)
    thr, base = results.get("pipeline_throughput"), results.get("pipeline_baseline")
    if thr and base and base["tasks_per_s"]:
        v["pipeline_ratio"] = round(thr["applied_per_s"] / base["tasks_per_s"], 3)
    lat = results.get("pipeline_latency")
    if lat:
        v["accept_to_visible_p99_ms"] = lat["accept_to_visible_ms"]["p99"]
    burst = results.get("burst")
    if burst:
        v["burst_lost"] = burst["lost"] + burst["applied_more_than_once"]
    mem = results.get("memory", {}).get("growth_pct")
    if mem:
        v["rss_growth_pct"] = max(mem["web"], mem["worker"])
    return v


def passed(name: str, value) -> bool | None:
    if value is None:
        return None
    target = TARGETS[name]
    return value >= target if name.endswith("ratio") else value <= target


def table(results: dict) -> str:
    m = results["machine"]
    c = results["config"]
    lines = [
        f"Machine: {m['nproc']} cores ({m['cpu_model']}), {m['memory_gib']} GiB; Python {m['python']}; "
        f"commit {m['git_commit']} (+{m['git_uncommitted_files_outside_bench']} uncommitted files outside bench/)",
        f"web: gunicorn {c['web_config']['worker_class']} {c['web_config']['workers']} workers "
        f"x {c['web_config']['worker_connections']} connections; "
        f"worker: prefork --concurrency {c['worker_concurrency']}; wrk -t{c['wrk']['threads']} -c{c['wrk']['connections']}"
        f"{'; QUICK mode' if c['quick'] else ''}",
        "",
        "| measure | service | baseline | figure | target | ok |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    others = []
    for path in (("ingress", "baseline"), ("ingress", "service"), ("ingress", "service_with_worker"),
                 ("pipeline_throughput",), ("pipeline_baseline",), ("pipeline_latency",)):
        node = results
        for key in path:
            node = (node or {}).get(key)
        cores = ((node or {}).get("cpu") or {}).get("others_on_machine_cores")
        if cores is not None:
            others.append(("/".join(path), cores))
    if others:
        worst = max(others, key=lambda kv: kv[1])
        lines.insert(2, f"Other load on the machine during the phases: up to {worst[1]:g} cores ({worst[0]})"
                        + (" -- WARNING: figures disturbed" if worst[1] > 0.15 else " (quiet)"))
    v = results.get("verdicts", {})

    def mark(name):
        ok = passed(name, v.get(name))
        return "n/a" if ok is None else ("yes" if ok else "**NO**")

    ing = results.get("ingress")
    if ing:
        s, b, w = ing["service"], ing["baseline"], ing["service_with_worker"]
        lines += [
            f"| ingress accepted/s (worker paused) | {s['ok_per_s']:g} | {b['ok_per_s']:g} | {v['ingress_ratio']:.2f}x "
            f"| >= {TARGETS['ingress_ratio']}x | {mark('ingress_ratio')} |",
            f"| ingress latency p50 / p99 (ms) | {s['latency_ms']['p50']:g} / {s['latency_ms']['p99']:g} "
            f"| {b['latency_ms']['p50']:g} / {b['latency_ms']['p99']:g} | | | |",
            f"| ingress accepted/s, worker consuming | {w['ok_per_s']:g} | {b['ok_per_s']:g} "
            f"| {w['ok_per_s'] / b['ok_per_s']:.2f}x | (info) | |",
            f"| ingress latency p50 / p99, worker consuming (ms) | {w['latency_ms']['p50']:g} / {w['latency_ms']['p99']:g} "
            f"| | | | |",
        ]
    thr, base = results.get("pipeline_throughput"), results.get("pipeline_baseline")
    if thr and base:
        lines.append(
            f"| pipeline applied/s (backlog of {thr['backlog']}) | {thr['applied_per_s']:g} | {base['tasks_per_s']:g} "
            f"no-op/s | {v['pipeline_ratio']:.2f}x | >= {TARGETS['pipeline_ratio']}x | {mark('pipeline_ratio')} |")
    lat = results.get("pipeline_latency")
    if lat:
        a2v = lat["accept_to_visible_ms"]
        lines += [
            f"| accept-to-visible p50 / p99 at {lat['target_rate']:g}/s (ms) | {_fmt(a2v['p50'])} / "
            f"{'>= ' if a2v.get('lower_bound') else ''}{_fmt(a2v['p99'])} "
            f"| | p99 {_fmt(a2v['p99'])} ms | <= {TARGETS['accept_to_visible_p99_ms']} ms "
            f"| {mark('accept_to_visible_p99_ms')} |",
            f"| (same run) accept p50 / p99; traced {lat['traced']} of {lat['sent']}, visible {lat['visible']}; "
            f"worker pickup p50 / p99 (ms) "
            f"| {_fmt(lat['accept_latency_ms']['p50'])} / {_fmt(lat['accept_latency_ms']['p99'])}; "
            f"pickup {_fmt(lat['db_received_to_claimed_ms']['p50'])} / {_fmt(lat['db_received_to_claimed_ms']['p99'])} "
            f"| | | | |",
        ]
    get = results.get("get_cost")
    if get:
        lines.append(
            f"| (pollers' cost) GET /api/jobs/<id> per s, 200 / 304; web CPU ms each | {get['200']['ok_per_s']:g} / "
            f"{get['304']['ok_per_s']:g}; {get['200']['cpu']['web']['cpu_ms_per_delivery']} / "
            f"{get['304']['cpu']['web']['cpu_ms_per_delivery']} | | | (info) | |")
    burst = results.get("burst")
    if burst:
        lines.append(
            f"| burst of {burst['callbacks']}: recorded / applied / events / lost / twice | {burst['recorded']} / "
            f"{burst['applied']} / {burst['job_events']} / {burst['lost']} / {burst['applied_more_than_once']} "
            f"| | {v['burst_lost']} lost | 0 | {mark('burst_lost')} |")
    mem = results.get("memory", {})
    points = mem.get("checkpoints", {})
    if points:
        keys = list(points)
        cells = "; ".join(f"{k}: web {points[k]['web_kb'] / 1024:.0f} MiB, worker {points[k]['worker_kb'] / 1024:.0f} MiB"
                          for k in keys)
        growth = mem.get("growth_pct")
        g = f"web {growth['web']:+g} %, worker {growth['worker']:+g} %" if growth else "n/a"
        lines.append(f"| RSS at {' / '.join(keys)} applied | {cells} | | {g} | < {TARGETS['rss_growth_pct']} % "
                     f"| {mark('rss_growth_pct')} |")
    sweeps = results.get("sweeps")
    if sweeps and sweeps.get("discarded_unrun"):
        total = sum(sweeps["discarded_unrun"].values())
        lines.append(f"| beat sweeps expired unrun, worker paused by the bench (canary max gap) | {total} "
                     f"({sweeps['canary_max_gap_seconds']} s) | | | (info) | |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    bench = Bench(args)
    print(f"bench {bench.run_id}: {'quick' if args.quick else 'full'} mode; logs in {bench.workdir}", flush=True)
    try:
        results = bench.run()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        bench.teardown()
    results["verdicts"] = verdicts(results)
    results["targets"] = TARGETS
    text = table(results)
    results["table"] = text
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    (bench.workdir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print()
    print(text)
    if results.get("profile"):
        from bench import profile

        print()
        print(profile.render(results["profile"]))
    print(f"\nwritten: {out} (and {bench.workdir}/results.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
