"""docker-compose.yml, the Dockerfile and the Procfile agree (no Docker engine needed)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from helpers.processes import procfile

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

PROCESS_TYPES = ("release", "web", "worker", "beat", "flower")
APP_SERVICES = PROCESS_TYPES
LONG_RUNNING = ("web", "worker", "beat", "flower")
SHELL_DEFAULT = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*:-([^}]*)\}")


def resolve_defaults(text: str) -> str:
    """`${WORKER_CONCURRENCY:-2}` -> `2`: what the command runs with the variable unset."""
    return SHELL_DEFAULT.sub(lambda m: m.group(1), text)


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def services() -> dict:
    return compose()["services"]


def argv(command) -> list[str]:
    if isinstance(command, str):
        return shlex.split(resolve_defaults(command))
    assert isinstance(command, list), command
    return [resolve_defaults(str(part)) for part in command]


def healthcheck_text(service: dict) -> str:
    test = service["healthcheck"]["test"]
    return test if isinstance(test, str) else " ".join(test)


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return env


# ---------------------------------------------------------------- Procfile


def test_procfile_has_exactly_the_contract_process_types():
    assert sorted(procfile()) == sorted(PROCESS_TYPES)


def test_resolve_defaults_takes_the_shell_default():
    assert resolve_defaults("--concurrency ${WORKER_CONCURRENCY:-2}") == "--concurrency 2"
    assert resolve_defaults("--port=${FLOWER_PORT:-5555}") == "--port=5555"
    assert resolve_defaults("no variables") == "no variables"


# ---------------------------------------------------------------- compose services


def test_required_services_exist():
    missing = {"postgres", "redis", *APP_SERVICES} - set(services())
    assert not missing, f"missing services: {sorted(missing)}"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_service_runs_its_procfile_command(name):
    expected = shlex.split(resolve_defaults(procfile()[name]))
    assert argv(services()[name]["command"]) == expected


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_service_is_built_from_the_dockerfile(name):
    build = services()[name]["build"]
    if isinstance(build, str):
        build = {"context": build}
    assert (ROOT / build["context"]).resolve() == ROOT
    assert build.get("dockerfile", "Dockerfile") == "Dockerfile"


def test_app_services_share_one_anchor():
    raw = COMPOSE.read_text(encoding="utf-8")
    assert re.search(r"^x-app:\s*&app\s*$", raw, re.MULTILINE), "one x-app anchor for the shared build and environment"
    for name in APP_SERVICES:
        assert re.search(rf"^  {name}:\n    <<: \*app$", raw, re.MULTILINE), f"{name} does not merge *app"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_service_reaches_postgres_and_redis_services(name):
    all_services = services()
    env = environment(all_services[name])

    db = urlsplit(env["DATABASE_URL"])
    assert db.scheme in {"postgresql", "postgres", "postgresql+psycopg2"}
    assert db.hostname == "postgres" and db.hostname in all_services
    assert (db.port or 5432) == 5432
    pg_env = environment(all_services["postgres"])
    assert db.username == pg_env["POSTGRES_USER"]
    assert db.password == pg_env["POSTGRES_PASSWORD"]
    assert db.path.lstrip("/") == pg_env["POSTGRES_DB"]

    redis = urlsplit(env["REDIS_URL"])
    assert redis.scheme == "redis"
    assert redis.hostname == "redis" and redis.hostname in all_services
    assert (redis.port or 6379) == 6379


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_service_gets_the_configuration_from_the_host(name):
    env = environment(services()[name])
    assert env["PORT"] == "8000"
    assert env["PUBLIC_BASE_URL"] == "${PUBLIC_BASE_URL:-http://localhost:8000}"
    for var in (
        "N8N_BASE_URL",
        "N8N_JOB_WEBHOOK",
        "N8N_WEBHOOK_SECRET",
        "N8N_API_KEY",
        "WEBHOOK_SECRET",
        "FLOWER_BASIC_AUTH",
    ):
        assert re.fullmatch(rf"\$\{{{var}(:-|:\?)[^}}]*\}}", env[var] or ""), f"{var} = {env[var]!r}"


def test_healthchecks_on_postgres_redis_web_and_worker():
    all_services = services()
    assert "pg_isready" in healthcheck_text(all_services["postgres"])
    redis_check = healthcheck_text(all_services["redis"])
    assert "redis-cli" in redis_check and "ping" in redis_check

    web_test = all_services["web"]["healthcheck"]["test"]
    assert web_test[0] == "CMD" and web_test[1] == "python"
    assert "http://127.0.0.1:8000/readyz" in web_test[-1]
    compile(web_test[-1], "<healthcheck>", "exec")  # valid Python

    worker = all_services["worker"]["healthcheck"]["test"]
    assert worker[0] == "CMD-SHELL", "$HOSTNAME needs a shell"
    assert "inspect ping" in worker[1] and "celery@$$HOSTNAME" in worker[1]
    # A single `$` would be interpolated by compose itself (to an empty string).
    assert not re.search(r"(?<!\$)\$(?!\$)", worker[1].replace("$$", ""))


def test_redis_is_durable():
    command = argv(services()["redis"]["command"])
    assert command[0] == "redis-server"
    pairs = dict(zip(command[1::2], command[2::2]))
    assert pairs == {"--appendonly": "yes", "--appendfsync": "everysec", "--maxmemory-policy": "noeviction"}
    assert services()["redis"]["image"].startswith("redis:7")
    assert services()["postgres"]["image"].startswith("postgres:16")


def test_depends_on_conditions():
    all_services = services()
    assert all_services["release"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("web", "worker", "beat"):
        deps = all_services[name]["depends_on"]
        assert deps["release"] == {"condition": "service_completed_successfully"}, name
        assert deps["redis"] == {"condition": "service_healthy"}, name
    assert all_services["flower"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "release" not in all_services["flower"]["depends_on"]


def test_restart_policies_and_ports():
    all_services = services()
    for name in LONG_RUNNING + ("postgres", "redis"):
        assert all_services[name]["restart"] == "unless-stopped", name
    assert all_services["release"].get("restart", "no") == "no"
    assert "8000:8000" in all_services["web"]["ports"]
    assert any(str(p).endswith("5555:5555") for p in all_services["flower"]["ports"])


# ---------------------------------------------------------------- Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_dockerfile_installs_requirements_and_runs_web_as_non_root():
    assert DOCKERFILE.is_file()
    assert (ROOT / "requirements.txt").is_file()
    instructions = dockerfile_instructions()
    keywords = [k for k, _ in instructions]
    assert instructions[0] == ("FROM", "python:3.11-slim")
    assert ("WORKDIR", "/app") in instructions
    runs = " ".join(rest for k, rest in instructions if k == "RUN")
    assert re.search(r"pip install (--no-cache-dir -r requirements\.txt|-r requirements\.txt --no-cache-dir)", runs)
    assert "mkdir -p var" in runs
    # requirements.txt is copied before the install, the code after it.
    copies = [rest for k, rest in instructions if k == "COPY"]
    assert any("requirements.txt" in c for c in copies[:1])
    assert keywords.index("COPY", keywords.index("RUN")) > keywords.index("RUN")
    users = [rest for k, rest in instructions if k == "USER"]
    assert users and users[-1] not in {"root", "0"}
    assert ("EXPOSE", "8000") in instructions
    cmd = [rest for k, rest in instructions if k == "CMD"][-1]
    assert json.loads(cmd) == shlex.split(procfile()["web"])


def test_dockerignore_keeps_local_state_out_of_the_image():
    entries = set((ROOT / ".dockerignore").read_text(encoding="utf-8").split())
    assert {".venv", "var", ".git", "__pycache__", ".pytest_cache"} <= entries
