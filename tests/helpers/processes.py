"""The service's real processes, started from the Procfile's own lines, for the integration
tests and for the benchmark.

Nothing here imports pytest or the service: bench/run.py imports this module too (with tests/
on its path), so that the tests and the bench run the very same processes the same way.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from helpers import wait_for

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
    """Each process type's command line, as a Procfile runner reads it; a line it would not read is an error."""
    commands: dict[str, str] = {}
    for line in (root / "Procfile").read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, command = line.partition(":")
        if not sep or name.strip() in commands:
            raise ValueError(f"Procfile line without 'name: command', or a process type twice: {line!r}")
        commands[name.strip()] = command.strip()
    return commands


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def group_members(pgid: int) -> list[int]:
    """The live processes (zombies aside) of a process group: a started process and every child
    it made (gunicorn's workers, a Celery worker's pool), since each stack process leads its own."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _ppid, group = stat.read_bytes().rsplit(b")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue
        if int(group) == pgid and state != b"Z":
            members.append(int(stat.parent.name))
    return members


class Stack:
    """Procfile processes (web, worker, beat, ... and `release`) with their logs under `workdir`.

    Each runs as a Procfile runner runs it: `sh -c` on the Procfile's own line (variables and
    their defaults expanded by the shell), the virtualenv's bin first on PATH, in its own
    process group. `env` is added to this process's environment, or with `inherit=False` is the
    whole of it (as a runner started with exactly that environment).
    """

    def __init__(self, env: dict, workdir: Path, root: Path = ROOT, port: int | None = None, inherit: bool = True):
        self.root = root
        self.commands = procfile(root)
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.workdir = Path(workdir)
        defaults = {"PORT": str(self.port), "PUBLIC_BASE_URL": self.base_url, "WEB_CONCURRENCY": "2",
                    "PYTHONUNBUFFERED": "1"}
        self.env = {**os.environ, **defaults, **env} if inherit else dict(env)
        self.env["PATH"] = f"{BIN}{os.pathsep}{self.env.get('PATH', os.defpath)}"
        self.procs: dict[str, subprocess.Popen] = {}
        self.offsets: dict[str, int] = {}

    def spawn(self, name: str, command: str | None = None, **env: str) -> subprocess.Popen:
        """Start process type `name` (or `command` under that name), its output appended to <name>.log."""
        self.offsets[name] = len(self.log(name))  # a restarted process appends to its log
        with open(self.workdir / f"{name}.log", "ab") as log:
            # `exec`: the started pid is the process itself (gunicorn's master, Celery's main
            # process), not a shell waiting for it, so its signals and exit are its own.
            proc = subprocess.Popen(
                ["sh", "-c", f"exec {command or self.commands[name]}"], cwd=self.root, env={**self.env, **env},
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.procs[name] = proc
        return proc

    def release(self) -> None:
        """The Procfile's `release` command (the migrations), run to its end."""
        done = subprocess.run(["sh", "-c", self.commands["release"]], cwd=self.root, env=self.env,
                              capture_output=True, text=True, timeout=120)
        if done.returncode:
            raise RuntimeError(f"release failed:\n{done.stdout}\n{done.stderr}")

    def start_web(self, **env: str) -> None:
        self.spawn("web", **env)
        self.wait_http("/healthz")

    def start_worker(self, **env: str) -> None:
        # A node name of its own: two workers on one broker (another stack's) stay apart.
        self.spawn("worker", f"{self.commands['worker']} -n stack-{uuid.uuid4().hex[:6]}@%h", **env)
        self.wait_log("worker", b"ready.")

    def start_beat(self) -> None:
        self.spawn("beat")

    def start(self) -> None:
        self.start_web()
        self.start_worker()
        self.start_beat()

    def pause(self, name: str) -> None:
        """SIGSTOP to the process and its children: a paused worker consumes nothing."""
        os.killpg(self.procs[name].pid, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        os.killpg(self.procs[name].pid, signal.SIGCONT)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to a process and all its children (SIGKILL: as an OOM killer would); back
        once none of them is left."""
        self._end(self.procs.pop(name), sig)

    def stop_process(self, name: str) -> None:
        """Stop a process as its supervisor does (SIGTERM, then SIGKILL after 15 s)."""
        self._end(self.procs.pop(name), signal.SIGTERM, grace=15)

    def stop(self) -> None:
        for name in list(self.procs):
            self.stop_process(name)

    @staticmethod
    def _end(proc: subprocess.Popen, sig: int, grace: float = 30) -> None:
        for each in (sig, signal.SIGCONT):  # SIGCONT: a paused process handles its signal
            try:
                os.killpg(proc.pid, each)
            except ProcessLookupError:
                pass
        try:
            wait_for(lambda: not group_members(proc.pid), timeout=grace, interval=0.05,
                     message="the process group to exit")
        except AssertionError:
            if sig == signal.SIGKILL:
                raise
            Stack._end(proc, signal.SIGKILL)
        proc.wait()

    def log(self, name: str) -> bytes:
        path = self.workdir / f"{name}.log"
        return path.read_bytes() if path.exists() else b""

    def wait_log(self, name: str, needle: bytes, timeout: float = 60) -> None:
        """Until process `name` logs `needle` (since it was last started); fails at once if it exits."""
        def logged():
            if needle in self.log(name)[self.offsets.get(name, 0):]:
                return True
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited:\n{self.log(name)[-3000:].decode(errors='replace')}")
            return False

        wait_for(logged, timeout=timeout, message=f"{name} to log {needle!r}")

    def wait_http(self, path: str, timeout: float = 60, name: str = "web", base_url: str | None = None) -> None:
        """Until `path` answers 200 (on `base_url`, the stack's by default), served by process `name`."""
        url = (base_url or self.base_url) + path

        def answers():
            try:
                return requests.get(url, timeout=1).status_code == 200
            except requests.RequestException:
                if self.procs[name].poll() is not None:
                    raise RuntimeError(f"{name} exited:\n{self.log(name)[-3000:].decode(errors='replace')}")
                return False

        wait_for(answers, timeout=timeout, message=f"{url} to answer 200")


@contextmanager
def private_stack(workdir: Path, n8n, **env: str) -> Iterator[Stack]:
    """web, worker and beat on their own redis-server (and `env`: DATABASE_URL for a private
    PostgreSQL), so that killing or flushing the broker touches nothing else."""
    from helpers.redis_server import RedisServer

    broker = RedisServer(workdir)
    broker.start()
    stack = Stack(env={"REDIS_URL": broker.url, "N8N_JOB_WEBHOOK": n8n.url("/webhook/ai-job"), **env}, workdir=workdir)
    stack.broker = broker
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
        broker.stop()
