"""The service's processes for the benchmark: a private Redis, a fresh PostgreSQL database,
gunicorn / Celery worker / beat started from the Procfile's own command lines.

Nothing here imports the service: the processes are started exactly as the Procfile
starts them (binaries from the virtualenv this interpreter belongs to).
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- Procfile ---------------------------------------------------------------------------

_DEFAULTED = re.compile(r"\$\{(\w+):-([^}]*)\}")
_PLAIN = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def expand(command: str, env: dict) -> str:
    """Shell-style ${VAR:-default} and $VAR expansion, as honcho/sh would do it."""
    command = _DEFAULTED.sub(lambda m: env.get(m.group(1)) or m.group(2), command)
    return _PLAIN.sub(lambda m: env.get(m.group(1) or m.group(2), ""), command)


def procfile(env: dict, path: Path = ROOT / "Procfile") -> dict[str, list[str]]:
    """Each process type's argv, expanded against `env`, with the virtualenv's binaries."""
    commands = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#") or ":" not in line:
            continue
        name, _, command = line.partition(":")
        argv = shlex.split(expand(command.strip(), env))
        if argv and (BIN / argv[0]).exists():
            argv[0] = str(BIN / argv[0])
        commands[name.strip()] = argv
    return commands


def replace_option(argv: list[str], option: str, value: str) -> list[str]:
    """argv with `option`'s value replaced (appended when absent)."""
    argv = list(argv)
    if option in argv:
        argv[argv.index(option) + 1] = value
    else:
        argv += [option, value]
    return argv


# --- process trees and their memory -----------------------------------------------------


def _ppids() -> dict[int, int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses.
        rest = stat[stat.rfind(b")") + 2:].split()
        parents[int(entry)] = int(rest[1])
    return parents


def tree(root: int) -> list[int]:
    """`root` and all its descendants that are alive now."""
    parents = _ppids()
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in parents:
            out.append(pid)
            todo.extend(children.get(pid, ()))
    return out


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (not its children)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            rest = f.read().rsplit(b")", 1)[1].split()
        return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError):
        return 0.0


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores) since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def self_cpu_seconds() -> float:
    """This process and its waited-for children (wrk, helper scripts)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def postgres_cpu(dbname: str) -> dict:
    """CPU seconds of PostgreSQL's processes: backends of `dbname`, of other databases, and
    the server's own (checkpointer, WAL writer, ...)."""
    out = {"ours": 0.0, "other_databases": 0.0, "server": 0.0}
    for pid in pids_named("postgres"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                title = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        used = cpu_seconds(pid)
        if f" {dbname} " in title:
            out["ours"] += used
        elif "(" in title and ")" in title:  # "postgres: 15/main: user db 127.0.0.1(port) state"
            out["other_databases"] += used
        else:
            out["server"] += used
    return out


def busy_cores(seconds: float = 2.0) -> float:
    before, t = machine_busy_seconds(), time.monotonic()
    time.sleep(seconds)
    return (machine_busy_seconds() - before) / (time.monotonic() - t)


def pids_named(name: str) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as f:
                    if f.read().strip() == name:
                        out.append(int(entry))
            except OSError:
                pass
    return out


# --- services ---------------------------------------------------------------------------


class PrivateRedis:
    """`redis-server --port N --save "" --appendonly no`: never touches the machine's Redis."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if not binary:
            raise SystemExit("redis-server is not installed: apt-get install -y redis-server")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=open(self.workdir / "redis.log", "ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the private redis-server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


class Database:
    """A fresh PostgreSQL database, migrated with the Procfile's `release` command, dropped after."""

    def __init__(self, admin_url: str):
        self.admin_url = admin_url
        self.name = f"bench_{os.getpid()}_{secrets.token_hex(3)}"
        base = admin_url.rsplit("/", 1)[0]
        self.url = f"{base}/{self.name}"  # what the service reads from DATABASE_URL
        self.dsn = self.url.replace("postgresql+psycopg2://", "postgresql://")
        self.created = False

    def _admin(self):
        import psycopg2

        conn = psycopg2.connect(self.admin_url.replace("postgresql+psycopg2://", "postgresql://"))
        conn.autocommit = True
        return conn

    def create(self) -> None:
        conn = self._admin()
        try:
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{self.name}"')
        finally:
            conn.close()
        self.created = True

    def connect(self):
        import psycopg2

        conn = psycopg2.connect(self.dsn, application_name="bench")
        conn.autocommit = True
        return conn

    def drop(self) -> None:
        if not self.created:
            return
        conn = self._admin()
        try:
            with conn.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        finally:
            conn.close()
        self.created = False


class Proc:
    """One process (and its process group), its output appended to `<workdir>/<name>.log`."""

    def __init__(self, name: str, argv: list[str], env: dict, workdir: Path):
        self.name = name
        self.argv = argv
        self.log_path = workdir / f"{name}.log"
        self.offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.stopped = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> bytes:
        return self.log_path.read_bytes()[self.offset:] if self.log_path.exists() else b""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_log(self, needle: bytes, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log():
                return
            if not self.alive():
                raise RuntimeError(f"{self.name} exited:\n{self.log()[-3000:].decode(errors='replace')}")
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} did not log {needle!r}:\n{self.log()[-3000:].decode(errors='replace')}")

    def pause(self) -> None:
        """SIGSTOP the whole process group (a Celery worker and its pool): it consumes nothing."""
        os.killpg(self.proc.pid, signal.SIGSTOP)
        self.stopped = True

    def resume(self) -> None:
        os.killpg(self.proc.pid, signal.SIGCONT)
        self.stopped = False

    def stop(self, timeout: float = 20) -> None:
        if not self.alive():
            return
        try:
            if self.stopped:
                self.resume()
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=timeout)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)

    def tree(self) -> list[int]:
        return tree(self.proc.pid) if self.alive() else []

    def rss_kb(self) -> dict:
        pids = self.tree()
        per = {pid: rss_kb(pid) for pid in pids}
        return {"total_kb": sum(per.values()), "processes": len(per),
                "main_kb": per.get(self.proc.pid, 0), "max_child_kb": max([v for p, v in per.items() if p != self.proc.pid], default=0)}

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.tree())


def wait_http(url: str, timeout: float = 60, proc: Proc | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited:\n{proc.log()[-3000:].decode(errors='replace')}")
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer 200 within {timeout} s")
