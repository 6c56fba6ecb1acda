"""Round trips per delivery, counted inside the service's own code paths.

Run by `bench/run.py --profile` as a subprocess with the stack's environment, while the
stack's worker and beat are paused (so the only Redis client is this process):

    python -m bench.roundtrips N

It counts, for N signed callbacks posted through the ingress app (Flask's test client: the
same view, no gunicorn) and then for the same N deliveries applied by the worker's task
function (`workers.deliveries.apply`, run in-process):

- PostgreSQL: every network round trip psycopg2 makes (implicit BEGIN, each statement,
  COMMIT/ROLLBACK, the pool's pre-ping), by statement kind;
- Redis: every request written by redis-py (a pipeline is one), and the commands the
  server executed (INFO commandstats).

Nothing in the service is changed: psycopg2.connect and redis-py's send are wrapped in this
process only. Prints one JSON object.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections import Counter

import psycopg2
import psycopg2.extensions as ext

PG: Counter = Counter()
REDIS: Counter = Counter()


def _kind(query) -> str:
    text = query.decode() if isinstance(query, bytes) else str(query)
    word = text.lstrip().split(None, 1)[0].upper() if text.strip() else "?"
    if word == "SELECT" and re.search(r"FOR UPDATE", text, re.I):
        return "SELECT FOR UPDATE"
    if word == "SELECT" and text.strip().upper() in ("SELECT 1", "SELECT 1;"):
        return "SELECT 1 (pool pre-ping)"
    return word


class CountingCursor(ext.cursor):
    def execute(self, query, vars=None):
        conn = self.connection
        if not conn.autocommit and conn.info.transaction_status == ext.TRANSACTION_STATUS_IDLE:
            PG["BEGIN"] += 1
        PG[_kind(query)] += 1
        return super().execute(query, vars)

    def executemany(self, query, vars_list):
        conn = self.connection
        if not conn.autocommit and conn.info.transaction_status == ext.TRANSACTION_STATUS_IDLE:
            PG["BEGIN"] += 1
        PG[_kind(query) + " (executemany)"] += 1
        return super().executemany(query, vars_list)


class CountingConnection(ext.connection):
    def cursor(self, *args, **kwargs):
        kwargs.setdefault("cursor_factory", CountingCursor)
        return super().cursor(*args, **kwargs)

    def commit(self):
        if self.info.transaction_status != ext.TRANSACTION_STATUS_IDLE:
            PG["COMMIT"] += 1
        return super().commit()

    def rollback(self):
        if self.info.transaction_status != ext.TRANSACTION_STATUS_IDLE:
            PG["ROLLBACK"] += 1
        return super().rollback()


_connect = psycopg2.connect


def _counting_connect(*args, **kwargs):
    kwargs.setdefault("connection_factory", CountingConnection)
    PG["connect"] += 1
    return _connect(*args, **kwargs)


psycopg2.connect = _counting_connect

import redis  # noqa: E402
import redis.connection  # noqa: E402

_send = redis.connection.AbstractConnection.send_packed_command


def _counting_send(self, command, check_health=True):
    REDIS["requests written"] += 1
    return _send(self, command, check_health)


redis.connection.AbstractConnection.send_packed_command = _counting_send


def commandstats(client) -> Counter:
    return Counter({k.removeprefix("cmdstat_"): v["calls"] for k, v in client.info("commandstats").items()})


def per(counter: Counter, n: int) -> dict:
    return {k: round(v / n, 2) for k, v in sorted(counter.items(), key=lambda kv: -kv[1])}


def main(n: int) -> dict:
    from bench.load import HOOK, callback_body, signed_headers

    from ingress import create_app
    from workers.deliveries import apply as apply_task

    secret = os.environ["N8N_WEBHOOK_SECRET"].split(",")[0].encode()
    app = create_app()
    client = app.test_client()
    server = redis.Redis.from_url(os.environ["REDIS_URL"])
    run = f"rt{int(time.time())}"

    from shared.deliveries import BATCH

    def apply_in_batches(pks):
        for start in range(0, len(pks), BATCH):
            apply_task(delivery_pks=pks[start:start + BATCH])

    def post(i: int):
        body = callback_body(f"{run}-job-{i % 20}", 10 + i // 20, f"rt {i}")
        response = client.post(HOOK, data=body, headers=signed_headers(secret, body, f"{run}-{i}"))
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()

    # Warm-up: connections, the jobs (auto-created by their first callback), Celery's producer.
    warm = [post(i) for i in range(-40, 0)]
    import shared.deliveries as deliveries_module  # noqa: F401
    with app.app_context():
        engine = app.extensions["engine"]
    from sqlalchemy import text

    with engine.connect() as conn:
        pks = [r[0] for r in conn.execute(text("SELECT id FROM deliveries WHERE delivery_id LIKE :p"),
                                          {"p": f"{run}--%"})]
    apply_in_batches(pks)
    del warm

    PG.clear()
    REDIS.clear()
    stats = commandstats(server)
    for i in range(n):
        post(i)
    ingress = {"postgres": per(PG, n), "postgres_round_trips": round(sum(v for k, v in PG.items() if k != "connect") / n, 2),
               "redis_requests": round(REDIS["requests written"] / n, 2),
               "redis_commands": per(commandstats(server) - stats - Counter({"info": 1}), n)}

    with engine.connect() as conn:
        pks = [r[0] for r in conn.execute(
            text("SELECT id FROM deliveries WHERE delivery_id LIKE :p AND delivery_id NOT LIKE :w AND applied_at IS NULL"),
            {"p": f"{run}-%", "w": f"{run}--%"})]
    PG.clear()
    REDIS.clear()
    stats = commandstats(server)
    apply_in_batches(pks)
    worker = {"deliveries": len(pks), "postgres": per(PG, len(pks)),
              "postgres_round_trips": round(sum(v for k, v in PG.items() if k != "connect") / max(1, len(pks)), 2),
              "redis_requests": round(REDIS["requests written"] / max(1, len(pks)), 2),
              "redis_commands": per(commandstats(server) - stats - Counter({"info": 1}), max(1, len(pks))),
              "note": f"the task function only, on messages of up to {BATCH} deliveries (what the ingress "
                      "publishes under load; one at a time here it publishes one per delivery): Celery's own per-task Redis traffic (reserve, ack, events) is "
                      "measured on the running worker (pipeline phase, redis_commands_per_delivery)"}
    return {"n": n, "ingress_per_delivery": ingress, "worker_task_per_delivery": worker}


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    print("ROUNDTRIPS " + json.dumps(main(count)), flush=True)
