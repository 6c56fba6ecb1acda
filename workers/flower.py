"""`flower` (Procfile): Flower on $FLOWER_PORT, on every interface only behind FLOWER_BASIC_AUTH.

Flower without basic auth serves every task's arguments and lets anyone revoke tasks or
shut workers down. Unset, it still starts (a look from this machine, or through an SSH
tunnel) but listens on 127.0.0.1 only, and says so.

Run with `python -m workers.flower`; it execs `celery -A workers flower` with those arguments.
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger("workers.flower")


def flower_argv(env: dict) -> list[str]:
    """The `celery flower` command line for this environment."""
    address = "0.0.0.0" if env.get("FLOWER_BASIC_AUTH") else "127.0.0.1"
    port = env.get("FLOWER_PORT") or "5555"
    return [sys.executable, "-m", "celery", "-A", "workers", "flower", f"--address={address}", f"--port={port}"]


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s: %(levelname)s/flower] %(message)s")
    env = dict(os.environ)
    argv = flower_argv(env)
    if env.get("FLOWER_BASIC_AUTH"):
        log.info("FLOWER_BASIC_AUTH is set: Flower listens on all interfaces, behind basic auth")
    else:
        # Flower reads FLOWER_* itself: an empty FLOWER_BASIC_AUTH would be one empty
        # credential that nobody can send, refusing even the local operator.
        env.pop("FLOWER_BASIC_AUTH", None)
        log.warning(
            "FLOWER_BASIC_AUTH is not set: Flower listens on 127.0.0.1 only, so that nobody else can "
            "see task arguments or control workers; set FLOWER_BASIC_AUTH=user:password to open it "
            "on every interface"
        )
    os.execve(sys.executable, argv, env)


if __name__ == "__main__":
    main()
