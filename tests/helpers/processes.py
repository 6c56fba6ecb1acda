"""The service's real processes, started as the Procfile starts them, for integration tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def fresh_copy(target: Path) -> Path:
    """The repository's files (tracked, and new ones not ignored) copied into `target`, as a
    fresh clone has them: no var/, nothing a developer's machine made."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, files):
        source = ROOT / name.decode()
        if source.is_file():
            copy = target / name.decode()
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes(source.read_bytes())
            copy.chmod(source.stat().st_mode)
    # This run's virtualenv stands in for the one `make` would build from requirements.txt.
    os.utime(target / "requirements.txt", (0, 0))
    assert not (target / "var").exists()
    return target


def procfile(root: Path = ROOT) -> dict[str, str]:
    """Each process type's command line, as a Procfile runner reads it."""
    commands = {}
    for line in (root / "Procfile").read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and not line.lstrip().startswith("#"):
            commands[name.strip()] = command.strip()
    return commands


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    """web (gunicorn), worker and beat with their logs under `workdir`."""

    def __init__(self, env: dict, workdir: Path, port: int | None = None, cwd: Path = ROOT):
        self.port = port or free_port()
        self.cwd = cwd
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.workdir = Path(workdir)
        self.env = {
            **os.environ,
            "PORT": str(self.port),
            "PUBLIC_BASE_URL": self.base_url,
            "WEB_CONCURRENCY": "2",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.procs: dict[str, subprocess.Popen] = {}
        self.offsets: dict[str, int] = {}

    def _spawn(self, name: str, argv: list[str], env: dict | None = None) -> subprocess.Popen:
        self.offsets[name] = len(self.log(name))  # a restarted process appends to its log
        log = open(self.workdir / f"{name}.log", "ab")
        proc = subprocess.Popen(
            argv, cwd=self.cwd, env={**self.env, **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def start_web(self) -> None:
        self._spawn("web", [str(BIN / "gunicorn"), "--config", "ingress/gunicorn_conf.py", "ingress:create_app()"])
        self.wait_http("/healthz")

    def start_worker(self, concurrency: int = 2) -> None:
        self._spawn(
            "worker",
            [str(BIN / "celery"), "-A", "workers", "worker", "--loglevel", "INFO", "--events",
             "--concurrency", str(concurrency), "-n", f"test-{uuid.uuid4().hex[:6]}@%h"],
        )
        self.wait_log("worker", b"ready.")

    def start_beat(self) -> None:
        self._spawn("beat", [str(BIN / "celery"), "-A", "workers", "beat", "--loglevel", "INFO"])

    def start(self) -> None:
        self.start_web()
        self.start_worker()
        self.start_beat()

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Kill a process and all its children (a worker's pool), as an OOM killer would."""
        proc = self.procs.pop(name)
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)

    def stop_process(self, name: str) -> None:
        """Stop a process as its supervisor does (SIGTERM, then SIGKILL after 15 s)."""
        proc = self.procs[name]
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            self.kill(name)
        self.procs.pop(name, None)

    def stop(self) -> None:
        for name in list(self.procs):
            self.stop_process(name)

    def log(self, name: str) -> bytes:
        path = self.workdir / f"{name}.log"
        return path.read_bytes() if path.exists() else b""

    def wait_log(self, name: str, needle: bytes, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        start = self.offsets.get(name, 0)
        while time.monotonic() < deadline:
            if needle in self.log(name)[start:]:
                return
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited:\n{self.log(name)[-3000:].decode(errors='replace')}")
            time.sleep(0.1)
        raise TimeoutError(f"{name} did not log {needle!r}:\n{self.log(name)[-3000:].decode(errors='replace')}")

    def wait_http(self, path: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(self.base_url + path, timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.base_url}{path} not up:\n{self.log('web')[-3000:].decode(errors='replace')}")


class ProcfileStack(Stack):
    """The Procfile's process types in `root`, run as a Procfile runner runs them: `sh -c` on
    their own line, in exactly `env` (no PUBLIC_BASE_URL unless it is there) plus a PORT each."""

    def __init__(self, env: dict, workdir: Path, root: Path):
        super().__init__({}, workdir, cwd=root)
        self.env = dict(env)

    def start_type(self, name: str, **env: str) -> subprocess.Popen:
        return self._spawn(name, ["sh", "-c", procfile(self.cwd)[name]], env)


@contextmanager
def private_stack(workdir: Path, n8n) -> Iterator[Stack]:
    """A stack on its own redis-server, so that killing or flushing the broker touches nothing else."""
    from helpers.redis_server import RedisServer

    broker = RedisServer(workdir)
    broker.start()
    stack = Stack(env={"REDIS_URL": broker.url, "N8N_JOB_WEBHOOK": n8n.url("/webhook/ai-job")}, workdir=workdir)
    stack.broker = broker
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
        broker.stop()

