#!/usr/bin/env python
"""Benchmark: the ingress and the pipeline against their baselines, in one run (bench/README.md).

The Procfile's processes (started by tests/helpers/processes.py, as for the tests) on a fresh
PostgreSQL database and a private redis-server; a markdown table, and bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import psycopg2  # noqa: E402
import redis  # noqa: E402

from bench import load, wrk  # noqa: E402
from helpers import wait_for  # noqa: E402
from helpers.postgres import create_database, drop_database  # noqa: E402
from helpers.processes import Stack, free_port, group_members  # noqa: E402
from helpers.redis_server import RedisServer  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TARGETS = {"ingress_ratio": 0.6, "pipeline_ratio": 0.5, "accept_to_visible_p99_ms": 250, "burst_lost": 0,
           "rss_growth_pct": 10}
# High enough never to refuse a benchmark request, so the limiter's Redis round trip is still paid.
NO_REFUSAL_LIMIT = "1000000000/60"
PHASES = "pipeline,ingress,burst,memory"
PROCESS_COUNTS = ("WEB_CONCURRENCY", "WEB_CONNECTIONS", "WORKER_CONCURRENCY")
PG_ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
OPTIONS = {  # name: (type, full run, --quick, help)
    "ingress-seconds": (float, 30, 6, "each wrk measurement"),
    "warmup-seconds": (float, 5, 2, "wrk warm-up before measuring"),
    "pipeline-rate": (float, 100, 100, "deliveries per second of the open-loop sender"),
    "pipeline-seconds": (float, 60, 10, "duration of the open loop"),
    "poll-interval-ms": (float, 20, 20, "a traced delivery's job is polled this often until it shows"),
    "poll-every": (int, 4, 4, "trace one delivery in this many"),
    "burst": (int, 20000, 2000, "callbacks in the zero-loss burst"),
    "memory-checkpoints": (str, "10000,50000", "2000,8000", "deliveries applied at which RSS is read"),
    "only": (str, PHASES, PHASES, "the phases to run"),
    "wrk-threads": (int, 2, 2, "wrk -t"),
    "wrk-connections": (int, 32, 32, "wrk -c"),
    "web-concurrency": (str, "", "", "WEB_CONCURRENCY (empty: the service's default)"),
    "web-connections": (str, "", "", "WEB_CONNECTIONS, gevent's connections per process (empty: default)"),
    "worker-concurrency": (str, "", "", "WORKER_CONCURRENCY (empty: the Procfile's default)"),
    "pg-admin-url": (str, PG_ADMIN_URL, PG_ADMIN_URL, "the PostgreSQL server the run's database is made on"),
    "wait-quiet": (float, 300, 300, "wait up to this long for the machine to be idle before a phase"),
    "quiet-cores": (float, 0.3, 0.3, "idle: other processes use fewer cores than this"),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller figures (second column of bench/README's options)")
    p.add_argument("--keep", action="store_true", help="keep the database at the end, for inspection")
    p.add_argument("--output", default=str(RESULTS / "latest.json"))
    for name, (cast, full, quick, text) in OPTIONS.items():
        p.add_argument(f"--{name}", type=cast, help=f"{text} (full {full}, quick {quick})")
    args = p.parse_args(argv)
    args.quick = args.quick or os.environ.get("BENCH_QUICK", "0") not in ("", "0")
    for name, (cast, full, quick, _) in OPTIONS.items():
        key = name.replace("-", "_")
        if getattr(args, key) is None:
            setattr(args, key, cast(os.environ.get(f"BENCH_{key.upper()}") or (quick if args.quick else full)))
    args.memory_checkpoints = [int(x) for x in args.memory_checkpoints.split(",") if x.strip()]
    args.only = {x.strip() for x in args.only.split(",") if x.strip()}
    return args


# --- the machine and its processes --------------------------------------------------------


def machine() -> dict:
    def first(path: str, prefix: str) -> str:
        with open(path) as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith(prefix)), "")

    def git(*argv: str) -> str:
        return subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    dirty = [line for line in git("status", "--porcelain").splitlines() if not line[3:].startswith("bench/")]
    return {
        "nproc": len(os.sched_getaffinity(0)), "cpu_model": first("/proc/cpuinfo", "model name"),
        "memory_gib": round(int(first("/proc/meminfo", "MemTotal").split()[0]) / 2 ** 20, 1),
        "kernel": platform.release(), "python": platform.python_version(),
        "versions": {name: version(name) for name in ("flask", "gunicorn", "gevent", "celery", "kombu", "redis",
                                                      "sqlalchemy", "psycopg2-binary")},
        "git_commit": git("rev-parse", "--short", "HEAD"), "git_uncommitted_files_outside_bench": len(dirty),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError):
        return 0.0


def rss_kb(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, IndexError):
        return 0


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores) since boot."""
    with open("/proc/stat") as f:
        user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in f.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


# --- the run ------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.run_id = "b" + secrets.token_hex(3)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        self.workdir = RESULTS / f"run-{stamp}-{self.run_id}"
        self.workdir.mkdir(parents=True)
        self.secret = ("bench-secret-" + secrets.token_hex(8)).encode()
        self.results: dict = {"run_id": self.run_id, "started_at": stamp, "machine": machine()}
        self.db_name = f"bench_{os.getpid()}_{secrets.token_hex(3)}"
        self.samples: list[dict] = []
        self.sampling = threading.Event()
        self.stack = self.broker = self.conn = None
        self.t0 = time.monotonic()

    def log(self, message: str) -> None:
        print(f"[{time.monotonic() - self.t0:7.1f}s] {message}", flush=True)

    def wait_quiet(self, phase: str) -> None:
        """Wait (bounded) until other work leaves the cores alone; called while the stack is idle."""
        a, deadline = self.args, time.monotonic() + self.args.wait_quiet
        while True:
            before, started = machine_busy_seconds(), time.monotonic()
            time.sleep(2)
            busy = (machine_busy_seconds() - before) / (time.monotonic() - started)
            if busy <= a.quiet_cores or time.monotonic() > deadline:
                break
            self.log(f"the machine is busy ({busy:.2f} cores used by others); waiting before {phase}")
        self.results["machine"].setdefault("busy_cores_before", {})[phase] = round(busy, 2)

    def setup(self) -> None:
        a = self.args
        wrk.ensure_wrk()
        self.broker = RedisServer(self.workdir)
        self.broker.start()
        self.redis = self.broker.client()
        url = create_database(a.pg_admin_url, self.db_name)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"}
               and not k.startswith(("N8N_", "WEBHOOK_", "RATE_LIMIT_", "BENCH_"))}
        env.update(DATABASE_URL=url, REDIS_URL=self.broker.url, N8N_WEBHOOK_SECRET=self.secret.decode(),
                   PORT=str(port), PUBLIC_BASE_URL=f"http://127.0.0.1:{port}", VAR_DIR=str(self.workdir / "var"),
                   PYTHONUNBUFFERED="1", RATE_LIMIT_PER_TOKEN=NO_REFUSAL_LIMIT, RATE_LIMIT_PER_SENDER=NO_REFUSAL_LIMIT)
        env.update({name: getattr(a, name.lower()) for name in PROCESS_COUNTS if getattr(a, name.lower())})
        self.stack = stack = Stack(env, self.workdir, port=port, inherit=False)
        self.results["config"] = {
            "commands": stack.commands, "processes": {k: env.get(k, "default") for k in PROCESS_COUNTS},
            "wrk": {"threads": a.wrk_threads, "connections": a.wrk_connections}, "quick": a.quick,
            "args": {k: sorted(v) if isinstance(v, set) else v for k, v in vars(a).items()},
        }
        self.log(f"database {self.db_name}, redis :{self.broker.port}, web :{port}, logs {self.workdir}")
        stack.release()
        stack.start()
        token = subprocess.run(["flask", "--app", "ingress", "create-token", "--user", "bench"], cwd=ROOT,
                               env=stack.env, capture_output=True, text=True, check=True)
        self.token = token.stdout.strip().splitlines()[-1]
        self.conn = psycopg2.connect(url.replace("+psycopg2", ""), application_name="bench")
        self.conn.autocommit = True

    def teardown(self) -> None:
        self.sampling.set()
        if self.stack:
            self.stack.stop()
        if self.conn:
            self.conn.close()
        if not self.args.keep:
            drop_database(self.args.pg_admin_url, self.db_name)
        if self.broker:
            self.broker.stop()

    # -- the database's figures

    def q(self, sql: str, *params) -> list[tuple]:
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()

    def wait_applied(self, interval: float = 0.1) -> float:
        """Seconds until every recorded delivery is applied (an EXISTS: cheap for PostgreSQL)."""
        started = time.monotonic()
        wait_for(lambda: not self.q("SELECT EXISTS (SELECT 1 FROM deliveries WHERE applied_at IS NULL)")[0][0],
                 timeout=900, interval=interval, message="every delivery applied")
        return time.monotonic() - started

    # -- memory and CPU

    def start_sampler(self) -> None:
        """Every 2 s: deliveries applied and the RSS of the web and worker process trees."""
        conn = psycopg2.connect(self.conn.dsn)
        conn.autocommit = True

        def sample():
            while not self.sampling.wait(2.0):
                with conn.cursor() as cur:
                    cur.execute("SELECT count(applied_at) FROM deliveries")
                    sample = {"t": round(time.monotonic() - self.t0, 1), "applied": cur.fetchone()[0]}
                for name in ("web", "worker"):
                    sample[f"{name}_kb"] = sum(map(rss_kb, group_members(self.stack.procs[name].pid)))
                self.samples.append(sample)
            conn.close()

        threading.Thread(target=sample, daemon=True).start()

    def cpu_snapshot(self) -> dict:
        snap = {name: sum(map(cpu_seconds, group_members(proc.pid))) for name, proc in self.stack.procs.items()}
        backends = self.q("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        snap["postgres"] = sum(cpu_seconds(pid) for (pid,) in backends)
        snap["redis"] = cpu_seconds(self.broker.proc.pid)
        times = os.times()  # the bench and the wrk runs it waited for
        snap["bench_and_wrk"] = times.user + times.system + times.children_user + times.children_system
        snap["_machine"], snap["_wall"] = machine_busy_seconds(), time.monotonic()
        snap["_redis"] = {k.removeprefix("cmdstat_"): v["calls"] for k, v in self.redis.info("commandstats").items()}
        return snap

    def cpu_since(self, before: dict, deliveries: int) -> dict:
        after = self.cpu_snapshot()
        wall = after["_wall"] - before["_wall"]
        used = {k: after[k] - before[k] for k in after if not k.startswith("_") and k in before}
        out: dict = {k: {"cores": round(v / wall, 2), "cpu_ms_per_delivery": round(v * 1000 / max(1, deliveries), 3)}
                     for k, v in used.items()}
        # Whatever else ran meanwhile took cores from the service: it lowers every figure of the phase.
        out["others_on_machine_cores"] = round(max(0.0, after["_machine"] - before["_machine"] - sum(used.values()))
                                               / wall, 2)
        calls = {k: v - before["_redis"].get(k, 0) for k, v in after["_redis"].items() if k != "info"}
        out["redis_commands_per_delivery"] = {k: round(v / max(1, deliveries), 2) for k, v in calls.items() if v}
        return out

    # -- load

    def seed(self) -> None:
        """Jobs of user `bench` (auto-created by a first callback) for the open loop; bodies for wrk."""
        n = max(200, int(self.args.pipeline_rate * self.args.pipeline_seconds / 90) + 1)
        self.jobs = [f"{self.run_id}-job-{k}" for k in range(n)]
        items = [(f"{self.run_id}-seed-{k}", load.callback_body(job, 0, "seed")) for k, job in enumerate(self.jobs)]
        statuses = asyncio.run(load.send_all(self.stack.port, self.secret, items))
        if statuses.get("200") != n:
            raise RuntimeError(f"the seed callbacks were not accepted ({statuses}):\n{self.web_errors()}")
        self.wait_applied()
        self.wrk_jobs = [f"{self.run_id}-wjob-{k}" for k in range(500)]
        self.log(f"seeded {n} jobs")

    def run_wrk(self, name: str, port: int | None = None, **how) -> dict:
        a = self.args
        result = wrk.run(f"http://127.0.0.1:{port or self.stack.port}{load.HOOK}", self.secret, self.wrk_jobs,
                         f"{self.run_id}-{name}", self.workdir, name, threads=a.wrk_threads,
                         connections=a.wrk_connections, **how)
        if result["ok"] == 0 or result["failed"] + result["duplicate"] > result["ok"] / 100:
            raise RuntimeError(f"wrk {name}: {result['ok']} accepted, {result['failed']} refused, "
                               f"{result['duplicate']} duplicates, errors {result['errors']}\n{self.web_errors()}")
        return result

    def web_errors(self) -> str:
        text = self.stack.log("web").decode(errors="replace")
        at = text.find("Traceback")
        return text[at:at + 3000] if at >= 0 else text[-1500:]

    # -- phases

    def phase_pipeline_latency(self) -> None:
        a = self.args
        self.wait_quiet("pipeline latency")
        before = self.cpu_snapshot()
        report = asyncio.run(load.open_loop(self.stack.port, self.secret, self.token, self.jobs, a.pipeline_rate,
                                            a.pipeline_seconds, f"{self.run_id}-pipe", a.poll_interval_ms / 1000,
                                            a.poll_every))
        report["cpu"] = self.cpu_since(before, report["accepted"])
        self.wait_applied()
        # The database's view: received to claimed by a worker.
        picked = [ms for (ms,) in self.q("SELECT apply_ms FROM deliveries WHERE delivery_id LIKE %s "
                                         "AND apply_ms IS NOT NULL", f"{self.run_id}-pipe-%")]
        report["db_received_to_claimed_ms"] = {"p50": load.percentile(picked, 50), "p99": load.percentile(picked, 99)}
        self.results["pipeline_latency"] = report
        self.log(f"pipeline: accept-to-visible {report['accept_to_visible_ms']}")

    def phase_ingress(self) -> None:
        """wrk against the baseline app, then the service with its worker paused (whose backlog
        the worker then drains: pipeline throughput), then the service with the worker consuming."""
        a, stack, out = self.args, self.stack, {}
        self.wait_quiet("ingress")
        port = free_port()
        web = stack.commands["web"]
        assert "ingress:create_app()" in web, f"no app to replace in the web command: {web}"
        stack.spawn("baseline", web.replace("ingress:create_app()", "bench.baseline_app:create_app()"), PORT=str(port))
        try:
            stack.wait_http("/healthz", name="baseline", base_url=f"http://127.0.0.1:{port}")
            self.run_wrk("base-warm", port, seconds=a.warmup_seconds)
            before = self.cpu_snapshot()
            out["baseline"] = self.run_wrk("base", port, seconds=a.ingress_seconds)
            out["baseline"]["cpu"] = self.cpu_since(before, out["baseline"]["ok"])
        finally:
            stack.stop_process("baseline")

        stack.pause("worker")
        try:
            before = self.cpu_snapshot()
            out["service"] = self.run_wrk("svc", seconds=a.ingress_seconds)
            out["service"]["cpu"] = self.cpu_since(before, out["service"]["ok"])
            backlog = self.q("SELECT count(*) FROM deliveries WHERE applied_at IS NULL")[0][0]
        finally:
            before = self.cpu_snapshot()
            stack.resume("worker")
        drain = self.wait_applied(interval=0.05)
        self.results["pipeline_throughput"] = {"backlog": backlog, "seconds": round(drain, 3),
                                               "applied_per_s": round(backlog / drain, 1),
                                               "cpu": self.cpu_since(before, backlog)}
        self.log(f"ingress: service {out['service']['ok_per_s']}/s; backlog of {backlog} applied in {drain:.1f} s")

        before = self.cpu_snapshot()
        out["service_with_worker"] = self.run_wrk("svcw", seconds=a.ingress_seconds)
        out["service_with_worker"]["cpu"] = self.cpu_since(before, out["service_with_worker"]["ok"])
        self.wait_applied()
        self.results["ingress"] = out

    def phase_noop_baseline(self, n: int) -> None:
        """n no-op tasks published while their worker (the Procfile's, on Redis db 1) is paused,
        then timed from its resumption until the queue and the unacked hash are empty."""
        self.wait_quiet("no-op baseline")
        env = {"REDIS_URL": f"redis://127.0.0.1:{self.broker.port}/1"}
        stack, broker = self.stack, redis.Redis.from_url(env["REDIS_URL"])
        stack.spawn("noop-worker", stack.commands["worker"].replace("-A workers", "-A bench.noop_tasks"), **env)
        try:
            stack.wait_log("noop-worker", b"ready.")
            stack.pause("noop-worker")
            subprocess.run([sys.executable, "-m", "bench.noop_tasks", str(n)], cwd=ROOT, env={**stack.env, **env},
                           check=True, capture_output=True)
            before = self.cpu_snapshot()
            stack.resume("noop-worker")
            started = time.monotonic()
            wait_for(lambda: not (broker.llen("celery") or broker.hlen("unacked")), timeout=600, interval=0.01,
                     message="the no-op tasks consumed")
            seconds = time.monotonic() - started
            self.results["pipeline_baseline"] = {"tasks": n, "seconds": round(seconds, 3),
                                                 "tasks_per_s": round(n / seconds, 1), "cpu": self.cpu_since(before, n)}
        finally:
            stack.stop_process("noop-worker")
        self.log(f"pipeline baseline: {n} no-op tasks in {seconds:.1f} s")

    def phase_burst(self) -> None:
        """`burst` callbacks, one request per delivery id; what was not recorded is re-sent as a
        sender would. Lost: accepted but not applied; twice: more than one event for a delivery."""
        n, prefix = self.args.burst, f"{self.run_id}-burst-"
        self.wait_quiet("burst")
        r = self.run_wrk("burst", count=n)
        recorded = {d for (d,) in self.q("SELECT delivery_id FROM deliveries WHERE delivery_id LIKE %s", prefix + "%")}
        bodies = [line.split("\t", 2)[2].encode() for line in (self.workdir / "wrk-burst.tsv").read_text().splitlines()]
        missing = [(f"{prefix}{i}", bodies[i]) for i in range(n) if f"{prefix}{i}" not in recorded]
        if missing:
            self.log(f"burst: {len(missing)} not recorded after wrk (errors {r['errors']}); re-sending them")
            asyncio.run(load.send_all(self.stack.port, self.secret, missing))
        self.wait_applied()
        recorded, applied = self.q("SELECT count(*), count(applied_at) FROM deliveries WHERE delivery_id LIKE %s",
                                   prefix + "%")[0]
        events, distinct = self.q("SELECT count(*), count(DISTINCT e.delivery_pk) FROM job_events e JOIN deliveries d "
                                  "ON d.id = e.delivery_pk WHERE d.delivery_id LIKE %s", prefix + "%")[0]
        self.results["burst"] = {"callbacks": n, "wrk": r, "resent": len(missing), "recorded": recorded,
                                 "applied": applied, "job_events": events, "lost": n - applied,
                                 "applied_more_than_once": events - distinct}
        self.log(f"burst: recorded {recorded}, applied {applied}, events {events} ({distinct} deliveries)")

    def top_up(self, target: int) -> None:
        """Deliveries until `target` have been applied in all (the memory checkpoints)."""
        recorded = self.q("SELECT count(*) FROM deliveries")[0][0]
        if recorded < target:
            self.run_wrk(f"topup{target}", count=target - recorded)
        self.wait_applied()

    def memory_report(self) -> None:
        marks = self.args.memory_checkpoints
        points = {str(m): next((s for s in self.samples if s["applied"] >= m), None) for m in marks}
        report = {"checkpoints": points}
        first, last = points[str(marks[0])], points[str(marks[-1])]
        if len(marks) > 1 and first and last:
            report["growth_pct"] = {name: round(100 * (last[f"{name}_kb"] / first[f"{name}_kb"] - 1), 1)
                                    for name in ("web", "worker")}
        self.results["memory"] = report

    def run(self) -> dict:
        a = self.args
        self.wait_quiet("start")
        self.setup()
        self.start_sampler()
        self.seed()
        self.run_wrk("warm", seconds=a.warmup_seconds)
        self.wait_applied()
        if "pipeline" in a.only:
            self.phase_pipeline_latency()
        if "memory" in a.only and a.memory_checkpoints:
            self.top_up(a.memory_checkpoints[0])
        if "ingress" in a.only:
            self.phase_ingress()
            self.phase_noop_baseline(self.results["pipeline_throughput"]["backlog"])
        if "burst" in a.only:
            self.phase_burst()
        if "memory" in a.only and a.memory_checkpoints:
            self.top_up(a.memory_checkpoints[-1])
            wait_for(lambda: self.samples and self.samples[-1]["applied"] >= a.memory_checkpoints[-1], timeout=30,
                     message="a memory sample past the last checkpoint")
            self.memory_report()
        self.results["samples"] = self.samples
        self.results["elapsed_seconds"] = round(time.monotonic() - self.t0, 1)
        return self.results


# --- report -------------------------------------------------------------------------------


def verdicts(r: dict) -> dict:
    v = {}
    if "ingress" in r:
        v["ingress_ratio"] = round(r["ingress"]["service"]["ok_per_s"] / r["ingress"]["baseline"]["ok_per_s"], 3)
    if "pipeline_baseline" in r:
        v["pipeline_ratio"] = round(
            r["pipeline_throughput"]["applied_per_s"] / r["pipeline_baseline"]["tasks_per_s"], 3)
    if "pipeline_latency" in r:
        v["accept_to_visible_p99_ms"] = r["pipeline_latency"]["accept_to_visible_ms"]["p99"]
    if "burst" in r:
        v["burst_lost"] = r["burst"]["lost"] + r["burst"]["applied_more_than_once"]
    if "growth_pct" in r.get("memory", {}):
        v["rss_growth_pct"] = max(r["memory"]["growth_pct"].values())
    return v


def table(r: dict) -> str:
    m, c, v = r["machine"], r["config"], r["verdicts"]
    phases = [r.get("ingress", {}).get(k) for k in ("baseline", "service", "service_with_worker")]
    phases += [r.get(k) for k in ("pipeline_throughput", "pipeline_baseline", "pipeline_latency")]
    others = max((p["cpu"]["others_on_machine_cores"] for p in phases if p), default=0)

    def target(name: str, text: str) -> list[str]:
        ok = v[name] >= TARGETS[name] if name.endswith("ratio") else v[name] <= TARGETS[name]
        return [text, "yes" if ok else "**NO**"]

    rows = []
    if "ingress" in r:
        s, b, w = (r["ingress"][k] for k in ("service", "baseline", "service_with_worker"))
        rows += [["ingress accepted/s (worker paused)", s["ok_per_s"], b["ok_per_s"], f"{v['ingress_ratio']:.2f}x",
                  *target("ingress_ratio", f">= {TARGETS['ingress_ratio']}x")],
                 ["ingress latency p50 / p99 (ms)", f"{s['latency_ms']['p50']} / {s['latency_ms']['p99']}",
                  f"{b['latency_ms']['p50']} / {b['latency_ms']['p99']}", "", "", ""],
                 ["ingress accepted/s, worker consuming", w["ok_per_s"], b["ok_per_s"],
                  f"{w['ok_per_s'] / b['ok_per_s']:.2f}x", "(info)", ""]]
    if "pipeline_ratio" in v:
        t, n = r["pipeline_throughput"], r["pipeline_baseline"]
        rows.append([f"pipeline applied/s (backlog of {t['backlog']})", t["applied_per_s"],
                     f"{n['tasks_per_s']} no-op/s", f"{v['pipeline_ratio']:.2f}x",
                     *target("pipeline_ratio", f">= {TARGETS['pipeline_ratio']}x")])
    if "pipeline_latency" in r:
        p = r["pipeline_latency"]
        a2v, post, pick = p["accept_to_visible_ms"], p["accept_latency_ms"], p["db_received_to_claimed_ms"]
        rows += [[f"accept-to-visible p50 / p99 at {p['target_rate']:g}/s (ms), {p['traced']} of {p['sent']} traced",
                  f"{a2v['p50']} / {'>= ' if a2v['lower_bound'] else ''}{a2v['p99']}", "", "",
                  *target("accept_to_visible_p99_ms", f"<= {TARGETS['accept_to_visible_p99_ms']} ms")],
                 ["(same run) accept p50 / p99; worker pickup p50 / p99 (ms)",
                  f"{post['p50']} / {post['p99']}; {pick['p50']} / {pick['p99']}", "", "", "", ""]]
    if "burst" in r:
        b = r["burst"]
        counts = (b[k] for k in ("recorded", "applied", "job_events", "lost", "applied_more_than_once"))
        rows.append([f"burst of {b['callbacks']}: recorded / applied / events / lost / twice",
                     " / ".join(map(str, counts)), "", f"{v['burst_lost']} lost", *target("burst_lost", "0")])
    if "rss_growth_pct" in v:
        points, growth = r["memory"]["checkpoints"], r["memory"]["growth_pct"]
        first, last = points[min(points, key=int)], points[max(points, key=int)]
        rows.append([f"RSS at {' / '.join(points)} applied", ", ".join(
            f"{name} {first[name + '_kb'] // 1024} / {last[name + '_kb'] // 1024} MiB" for name in ("web", "worker")),
            "", f"web {growth['web']:+g} %, worker {growth['worker']:+g} %",
            *target("rss_growth_pct", f"< {TARGETS['rss_growth_pct']} %")])
    return "\n".join([
        f"Machine: {m['nproc']} cores ({m['cpu_model']}), {m['memory_gib']} GiB; Python {m['python']}; commit "
        f"{m['git_commit']} (+{m['git_uncommitted_files_outside_bench']} uncommitted files outside bench/)",
        f"Other load on the machine during the phases: up to {others:g} cores"
        + (" -- WARNING: figures disturbed" if others > 0.15 else " (quiet)"),
        ", ".join(f"{k} {v}" for k, v in c["processes"].items())
        + f"; wrk -t{c['wrk']['threads']} -c{c['wrk']['connections']}{'; QUICK mode' if c['quick'] else ''}",
        "", "| measure | service | baseline | figure | target | ok |", "| --- | --- | --- | --- | --- | --- |",
        *(f"| {' | '.join(map(str, row))} |" for row in rows)])


def main(argv=None) -> int:
    args = parse_args(argv)
    bench = Bench(args)
    print(f"bench {bench.run_id}: {'quick' if args.quick else 'full'} run; logs in {bench.workdir}", flush=True)
    try:
        results = bench.run()
    finally:
        bench.teardown()
    results.update(verdicts=verdicts(results), targets=TARGETS)
    results["table"] = table(results)
    for path in (Path(args.output), bench.workdir / "results.json"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2, default=str))
    print(f"\n{results['table']}\n\nwritten: {args.output} (and {bench.workdir}/results.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
