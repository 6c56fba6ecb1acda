"""Behaviour that depends on the real server: bodies over the limit under gunicorn, and a
request waiting on PostgreSQL that must not hold up the other requests of its process."""

import http.client
import json
import threading
import time
import uuid
from urllib.parse import urlparse

import requests

from helpers import body_of, hmac_headers
from helpers.env import N8N_SECRET
from helpers.postgres import insert_waiting, writes_held
from helpers.processes import Stack

HOOK = "/api/n8n/hooks/job-status"
LIMIT = 65536  # MAX_BODY_BYTES of the test environment


def send(stack, body: bytes, headers: dict, chunked: bool):
    url = urlparse(stack.base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    if chunked:
        headers = {k: v for k, v in headers.items() if k.lower() != "content-length"}
        pieces = (body[i:i + 8192] for i in range(0, len(body), 8192))
        conn.request("POST", HOOK, body=pieces, headers={**headers, "Transfer-Encoding": "chunked"}, encode_chunked=True)
    else:
        conn.request("POST", HOOK, body=body, headers=headers)
    response = conn.getresponse()
    answer = json.loads(response.read() or b"{}")
    conn.close()
    return response.status, answer


def padded(size: int) -> bytes:
    base = {"job_id": f"big-{uuid.uuid4()}", "status": "running", "padding": ""}
    base["padding"] = "x" * (size - len(body_of(base)))
    body = body_of(base)
    assert len(body) == size
    return body


def test_chunked_body_over_the_limit_is_413_not_truncated(stack):
    for size in (LIMIT + 1, LIMIT * 3):
        body = padded(size)
        status, answer = send(stack, body, hmac_headers(N8N_SECRET, body), chunked=True)
        assert (status, answer.get("error")) == (413, "payload_too_large"), size


def test_content_length_over_the_limit_is_413(stack):
    body = padded(LIMIT + 1)
    status, answer = send(stack, body, hmac_headers(N8N_SECRET, body), chunked=False)
    assert (status, answer.get("error")) == (413, "payload_too_large")


def test_body_at_the_limit_is_accepted_both_ways(stack):
    for chunked in (False, True):
        body = padded(LIMIT)
        status, answer = send(stack, body, hmac_headers(N8N_SECRET, body, timestamp=int(time.time())), chunked=chunked)
        assert (status, answer.get("accepted")) == (200, True), chunked


def test_a_request_waiting_on_postgresql_does_not_stop_its_process(engine, n8n, tmp_path):
    """gevent workers: libpq must wait through gevent (post_worker_init), or one slow query
    freezes every request of the process. One process, so that nothing can go around it."""
    web = Stack(env={"WEB_CONCURRENCY": "1", "N8N_JOB_WEBHOOK": n8n.url("/webhook/ai-job")}, workdir=tmp_path)
    web.start_web()
    try:
        body = body_of({"job_id": f"held-{uuid.uuid4()}", "status": "running"})
        answers = []
        with writes_held(engine):
            sender = threading.Thread(target=lambda: answers.append(requests.post(
                web.base_url + HOOK, data=body, headers=hmac_headers(N8N_SECRET, body), timeout=30)))
            sender.start()
            insert_waiting(engine)

            assert requests.get(web.base_url + "/healthz", timeout=3).status_code == 200
            # Its database check answers (beat and worker do not run here: not ready all the same).
            assert requests.get(web.base_url + "/readyz", timeout=3).json()["checks"]["database"] == "ok"
            assert answers == [], "answered before its delivery was recorded"
        sender.join(30)
        assert answers[0].status_code == 200 and answers[0].json()["accepted"] is True
    finally:
        web.stop()
