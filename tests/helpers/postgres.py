"""Fresh databases, holding and watching the test database from outside; a private PostgreSQL
to break. No pytest here: the bench makes its database with these too."""

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text

from helpers import wait_for
from helpers.processes import ROOT, Stack, free_port, private_stack


def create_database(admin_url: str, name: str) -> str:
    """A new, empty database on the server of `admin_url`; its URL."""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return admin_url.rsplit("/", 1)[0] + "/" + name


def drop_database(admin_url: str, name: str) -> None:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@contextmanager
def fresh_database(admin_url: str, name: str) -> Iterator[str]:
    """A new, empty database for the block (its URL), dropped after it."""
    url = create_database(admin_url, name)
    try:
        yield url
    finally:
        drop_database(admin_url, name)


def migrate(url: str) -> str:
    """The database at `url` brought to the latest migration, in this process (Alembic); its URL."""
    from alembic import command
    from alembic.config import Config

    config = Config(str(ROOT / "shared/migrations/alembic.ini"))
    config.attributes["database_url"] = url
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")
    return url


def insert_waiting(engine, timeout: float = 10):
    """Until a backend of this database waits for a lock (an INSERT behind LOCK TABLE)."""
    with engine.connect() as connection:
        def waiting():
            count = connection.scalar(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ))
            connection.rollback()  # pg_stat_activity is read once per transaction
            return count

        wait_for(waiting, timeout=timeout, interval=0.01, message="an INSERT waiting for the lock")


@contextmanager
def writes_held(engine):
    """Hold the deliveries table locked: the writer's INSERT waits until the block ends."""
    with engine.connect() as connection:
        with connection.begin():
            connection.execute(text("LOCK TABLE deliveries IN EXCLUSIVE MODE"))
            yield


PG_BIN = Path(os.environ.get("TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
# A request must be answered within this whether PostgreSQL crashed or froze: connecting and
# every statement wait DATABASE_TIMEOUT (3 s) at most, and a request may wait twice (a
# webhook behind the writer's stuck batch, then its own).
ANSWER_WITHIN = 8.0


class PrivatePostgres:
    """A throw-away PostgreSQL cluster: initdb into a temporary directory, its own port.

    PostgreSQL refuses to run as root: as root, its commands run as the `postgres` user,
    which then owns the directory.
    """

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="bridge-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            shutil.chown(self.root, user=self.user, group=self.user)

    def _run(self, *argv: str, timeout: float = 60) -> None:
        result = subprocess.run(
            [str(PG_BIN / argv[0]), *argv[1:]], cwd=self.root, user=self.user,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed:\n{result.stdout.decode(errors='replace')}\n{self.tail()}")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")

    def stop(self, mode: str = "immediate") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        result = subprocess.run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "status"], user=self.user,
                                cwd=self.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return result.returncode == 0

    def migrated_database(self, name: str = "bridge") -> str:
        """Create a database, migrate it with Alembic; its URL."""
        return migrate(create_database(self.url("postgres"), name))

    def url(self, database: str) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"

    def pids(self) -> list[int]:
        """The postmaster's pid and its children's (backends and auxiliary processes)."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = subprocess.run(["pgrep", "-P", str(postmaster)], stdout=subprocess.PIPE, text=True).stdout
        return [postmaster, *map(int, children.split())]

    @contextmanager
    def frozen(self):
        """Every process of the cluster stopped (SIGSTOP): the kernel still accepts and ACKs
        its connections, nothing answers. Continued (SIGCONT) at the end of the block."""
        pids = self.pids()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)

    def remove(self) -> None:
        if self.data.exists() and self.running():
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def private_postgres_stack(workdir: Path, n8n) -> Iterator[Stack]:
    """web, worker and beat on a private PostgreSQL (migrated; `stack.pg`, to stop or freeze) and
    a private Redis; `stack.engine` reads the database across its outages (pre-ping)."""
    from shared.db import make_engine

    pg = PrivatePostgres()
    try:
        pg.init()
        pg.start()
        with private_stack(workdir, n8n, DATABASE_URL=pg.migrated_database()) as stack:
            stack.pg, stack.engine = pg, make_engine(stack.env["DATABASE_URL"], pool_pre_ping=True)
            try:
                yield stack
            finally:
                stack.engine.dispose()
    finally:
        pg.remove()
