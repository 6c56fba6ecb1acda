"""Behaviour that depends on the real server: bodies over the limit under gunicorn, a
request waiting on PostgreSQL that must not hold up the other requests of its process, and
what clients send as raw bytes (framing, what gunicorn refuses itself, slow bodies)."""

import gzip
import http.client
import json
import socket
import threading
import time
import uuid
import zlib
from urllib.parse import urlparse

import pytest
import requests

from helpers import bearer, body_of, hmac_headers
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
    """gevent workers: libpq must wait through gevent (shared.db's wait callback), or one slow query
    freezes every request of the process. One process, so that nothing can go around it."""
    # DATABASE_TIMEOUT: the held INSERT outlasts the checks below, however loaded the machine.
    web = Stack(env={"WEB_CONCURRENCY": "1", "DATABASE_TIMEOUT": "60", "N8N_JOB_WEBHOOK": n8n.url("/webhook/ai-job")},
                workdir=tmp_path)
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


# --- what reaches the server as bytes: framing, gunicorn's own refusals, slow bodies -------


def exchange(stack, data: bytes, close_write: bool = False, timeout: float = 30):
    """Send raw bytes; the answer's (status, headers, JSON body). `close_write`: the client
    sends nothing more (a connection closed mid-body)."""
    url = urlparse(stack.base_url)
    with socket.create_connection((url.hostname, url.port), timeout=timeout) as sock:
        sock.sendall(data)
        if close_write:
            sock.shutdown(socket.SHUT_WR)
        response = http.client.HTTPResponse(sock, method=data.split(b" ", 1)[0].decode("latin-1"))
        response.begin()
        raw = response.read()
    assert response.getheader("Content-Type", "").startswith("application/json"), (response.status, raw[:300])
    return response.status, response.headers, json.loads(raw) if raw else None


def post_head(path: str, token: str, framing: str = "Transfer-Encoding: chunked", content_type="application/json"):
    return (f"POST {path} HTTP/1.1\r\nHost: bridge\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: {content_type}\r\n{framing}\r\n\r\n").encode()


MALFORMED_CHUNKS = [
    # name, what follows the headers, whether the client then stops sending
    ("size zz", b"zz\r\n{}\r\n0\r\n\r\n", False),
    ("size -2", b"-2\r\n{}\r\n0\r\n\r\n", False),
    ("size +2", b"+2\r\n{}\r\n0\r\n\r\n", False),
    ("size 0x2", b"0x2\r\n{}\r\n0\r\n\r\n", False),
    ("size with a trailing space", b"2 \r\n{}\r\n0\r\n\r\n", False),
    ("size missing", b"\r\n{}\r\n0\r\n\r\n", False),
    ("size line ended by a bare LF", b"2\n{}\r\n0\r\n\r\n", False),
    ("chunk without its CRLF", b"2\r\n{}XX0\r\n\r\n", False),
    ("invalid chunk extension", b"2;\x01\r\n{}\r\n0\r\n\r\n", False),
    ("bare CR in a chunk extension", b"2;a\rb\r\n{}\r\n0\r\n\r\n", False),
    ("trailer without a colon", b"2\r\n{}\r\n0\r\nbad trailer\r\n\r\n", False),
    ("trailer ended by a bare LF", b"2\r\n{}\r\n0\r\nX: y\n\r\n", False),
    ("trailer too large", b"2\r\n{}\r\n0\r\nX: " + b"a" * 9000 + b"\r\n\r\n", False),
    ("last chunk without the final CRLF", b"2\r\n{}\r\n0\r\n", True),
    ("connection closed mid-chunk", b"10\r\n{}", True),
    ("connection closed before the last chunk", b"2\r\n{}\r\n", True),
]


@pytest.mark.parametrize("path", [HOOK, "/api/jobs"])
@pytest.mark.parametrize("name, chunks, close_write", MALFORMED_CHUNKS, ids=[case[0] for case in MALFORMED_CHUNKS])
def test_malformed_chunked_bodies_are_400(stack, users, reliability, path, name, chunks, close_write):
    reliability.hostile_input("malformed chunked bodies (raw sockets, gunicorn)")
    _, token = users("chunks")
    status, headers, answer = exchange(stack, post_head(path, token) + chunks, close_write=close_write)
    assert (status, answer["error"]) == (400, "bad_request"), answer
    assert headers["Connection"] == "close"


GUNICORN_REFUSALS = [
    # name, request, status, code
    ("header without a colon", b"GET /api/jobs HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400, "bad_request"),
    ("header name with a space", b"GET /api/jobs HTTP/1.1\r\nHost: x\r\nX Y: z\r\n\r\n", 400, "bad_request"),
    ("obsolete line folding", b"GET /api/jobs HTTP/1.1\r\nHost: x\r\nX-A: b\r\n  c\r\n\r\n", 400, "bad_request"),
    ("request line of garbage", b"GARBAGE\r\n\r\n", 400, "bad_request"),
    ("HTTP/0.9 request line", b"GET /\r\n\r\n", 400, "bad_request"),
    ("method with a symbol", b"G@T / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"),
    ("HTTP/2.0 over HTTP/1", b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 400, "bad_request"),
    ("request line over 4094 bytes", b"GET /" + b"a" * 4200 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
    ("query over 4094 bytes", b"GET /api/jobs?q=" + b"a" * 4200 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
    ("101 headers", b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: a\r\n" % i for i in range(101)) + b"\r\n", 431,
     "request_header_fields_too_large"),
    ("header over 8190 bytes", b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8200 + b"\r\n\r\n", 431,
     "request_header_fields_too_large"),
    ("negative Content-Length", b"POST /api/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400,
     "bad_request"),
    ("Content-Length 1e3", b"POST /api/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 1e3\r\n\r\n", 400, "bad_request"),
    ("two Content-Lengths", b"POST /api/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
     400, "bad_request"),
    ("Content-Length and chunked", b"POST /api/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "bad_request"),
    ("Transfer-Encoding gzip alone", b"POST /api/jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400,
     "bad_request"),
    ("Expect something unknown", b"POST /api/jobs HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\nContent-Length: 2\r\n\r\n{}",
     417, "expectation_failed"),
]


@pytest.mark.parametrize("name, request_bytes, status, code", GUNICORN_REFUSALS, ids=[c[0] for c in GUNICORN_REFUSALS])
def test_gunicorns_own_refusals_are_the_contracts_json(stack, reliability, name, request_bytes, status, code):
    reliability.hostile_input("requests gunicorn refuses before the application (raw sockets)")
    answered, headers, answer = exchange(stack, request_bytes)
    assert (answered, answer["error"]) == (status, code), answer
    assert answer["message"]


def test_405_names_the_allowed_methods(stack):
    response = requests.delete(stack.base_url + "/api/jobs", timeout=10)
    assert (response.status_code, response.json()["error"]) == (405, "method_not_allowed")
    assert {"GET", "POST"} <= {method.strip() for method in response.headers["Allow"].split(",")}


@pytest.mark.parametrize("label, body", [
    ("gzip", gzip.compress(b'{"job_type": "cover_letter"}')),
    ("gzip", b'{"job_type": "cover_letter"}'),  # labelled compressed, sent plain
    ("deflate", zlib.compress(b'{"job_type": "cover_letter"}')),
    ("br", b'{"job_type": "cover_letter"}'),
    ("x-anything", b'{"job_type": "cover_letter"}'),
    ("gzip, identity", b'{"job_type": "cover_letter"}'),
])
def test_a_compressed_body_is_415(stack, users, label, body):
    _, token = users("encodings")
    headers = {**bearer(token), "Content-Type": "application/json", "Content-Encoding": label}
    job = requests.post(stack.base_url + "/api/jobs", data=body, headers=headers, timeout=10)
    assert (job.status_code, job.json()["error"]) == (415, "unsupported_media_type"), job.text
    hook = requests.post(stack.base_url + HOOK, data=body, headers={
        **hmac_headers(N8N_SECRET, body), "Content-Encoding": label}, timeout=10)
    assert (hook.status_code, hook.json()["error"]) == (415, "unsupported_media_type"), hook.text


@pytest.mark.parametrize("charset", ["utf-16", "UTF-16LE", "latin-1", "us-ascii", "utf-32"])
def test_a_charset_other_than_utf8_is_415(stack, users, charset):
    _, token = users("charsets")
    body = '{"job_type": "cover_letter"}'.encode("utf-16" if charset.lower().startswith("utf-16") else "ascii")
    content_type = f"application/json; charset={charset}"
    job = requests.post(stack.base_url + "/api/jobs", data=body,
                        headers={**bearer(token), "Content-Type": content_type}, timeout=10)
    assert (job.status_code, job.json()["error"]) == (415, "unsupported_media_type"), job.text
    hook = requests.post(stack.base_url + HOOK, data=body,
                         headers={**hmac_headers(N8N_SECRET, body), "Content-Type": content_type}, timeout=10)
    assert (hook.status_code, hook.json()["error"]) == (415, "unsupported_media_type"), hook.text


@pytest.mark.parametrize("charset", ["utf-8", "UTF-8", '"utf-8"', "utf8"])
def test_json_labelled_utf8_is_accepted(stack, users, charset):
    _, token = users("utf8")
    job = requests.post(stack.base_url + "/api/jobs", data='{"job_type": "cover_letter"}'.encode(),
                        headers={**bearer(token), "Content-Type": f"application/json; charset={charset}"}, timeout=10)
    assert job.status_code == 202, job.text


def test_stalled_bodies_hold_no_database_connection_and_time_out(users, n8n, tmp_path):
    """More stalled requests than one process's pool: the others are served at once, and
    each stalled one is answered 408 and closed after BODY_READ_TIMEOUT."""
    web = Stack(env={"WEB_CONCURRENCY": "1", "BODY_READ_TIMEOUT": "4", "N8N_JOB_WEBHOOK": n8n.url("/webhook/ai-job")},
                workdir=tmp_path)
    web.start_web()
    _, token = users("staller")
    url = urlparse(web.base_url)
    stalled = []
    try:
        for _ in range(40):  # the pool holds 20 + 10
            sock = socket.create_connection((url.hostname, url.port), timeout=60)
            sock.sendall(post_head("/api/jobs", token, "Content-Length: 2000") + b'{"job_type": "cover_letter", "params": {')
            stalled.append(sock)
        listing = requests.get(web.base_url + "/api/jobs", headers=bearer(token), timeout=60)
        assert listing.status_code == 200, listing.text
        assert requests.get(web.base_url + "/readyz", timeout=60).status_code == 200
        for sock in stalled:
            response = http.client.HTTPResponse(sock)
            response.begin()
            answer = json.loads(response.read())
            assert (response.status, answer["error"]) == (408, "request_timeout"), answer
            assert response.getheader("Connection") == "close"
            assert sock.recv(1) == b"", "the connection stays open"
    finally:
        for sock in stalled:
            sock.close()
        web.stop()


def _request(line: str, *headers: str, body: bytes = b"") -> bytes:
    head = [line, "Host: bridge", *headers, f"Content-Length: {len(body)}" if body else "", "Connection: close"]
    return ("\r\n".join(h for h in head if h) + "\r\n\r\n").encode("latin-1") + body


# Every way a client's bytes reach a parser at the HTTP layer: methods, paths, query
# strings, headers. {token} is a valid bearer token. Each answer is JSON and under 500.
HOSTILE_REQUESTS = [
    # methods
    _request("FOO /api/jobs HTTP/1.1"),
    _request("TRACE / HTTP/1.1"),
    _request("PROPFIND /api/jobs HTTP/1.1"),
    _request("get /healthz HTTP/1.1"),
    _request("CONNECT 127.0.0.1:80 HTTP/1.1"),
    _request("OPTIONS * HTTP/1.1"),
    _request("M" * 200 + " /api/jobs HTTP/1.1"),
    _request("HEAD /api/jobs HTTP/1.1", "Authorization: Bearer {token}"),
    _request("PUT /api/jobs/x HTTP/1.1", "Authorization: Bearer {token}"),
    # paths
    _request("GET /api/jobs/%ff HTTP/1.1", "Authorization: Bearer {token}"),
    _request("GET /api/jobs/% HTTP/1.1", "Authorization: Bearer {token}"),
    _request("GET /api/jobs/%zz HTTP/1.1", "Authorization: Bearer {token}"),
    _request("GET /api/jobs/%ED%A0%80 HTTP/1.1", "Authorization: Bearer {token}"),
    _request("GET /api/jobs/%F0%9F%98%80 HTTP/1.1", "Authorization: Bearer {token}"),
    _request("GET /api/jobs/\xff\xfe HTTP/1.1", "Authorization: Bearer {token}"),
    _request("GET /api/jobs/" + "j" * 4000 + " HTTP/1.1", "Authorization: Bearer {token}"),
    _request("GET /api/jobs/%00 HTTP/1.1", "Authorization: Bearer {token}"),
    _request("GET /api/jobs/..%2f..%2fetc%2fpasswd HTTP/1.1", "Authorization: Bearer {token}"),
    _request("GET //api//jobs HTTP/1.1", "Authorization: Bearer {token}"),
    _request("GET http://elsewhere.example/api/jobs HTTP/1.1", "Authorization: Bearer {token}"),
    _request("GET /api/jobs#fragment HTTP/1.1", "Authorization: Bearer {token}"),
    _request("POST /api/jobs/%ff/retry HTTP/1.1", "Authorization: Bearer {token}"),
    _request("POST /api/n8n/hooks/%ff HTTP/1.1"),
    _request("POST /api/notifications/%ff/read HTTP/1.1", "Authorization: Bearer {token}"),
    _request("POST /api/notifications/99999999999999999999999/read HTTP/1.1", "Authorization: Bearer {token}"),
    _request("POST /api/notifications/-1/read HTTP/1.1", "Authorization: Bearer {token}"),
    # query strings
    *(_request(f"GET /api/jobs?{query} HTTP/1.1", "Authorization: Bearer {token}") for query in (
        "limit=abc", "limit=1e9", "limit=-1", "limit=0", "limit=%ff", "limit=1&limit=2", "status=%ff%fe",
        "status=" + "s" * 3000, "job_type=%00", "&&&=&=", "a[b]=c", "cursor=%ff", "cursor=" + "A" * 3000,
        "cursor=!!!", "cursor=e30", "%ff=1", "limit", "=", "status=running%0d%0aX-Injected:%20yes",
    )),
    *(_request(f"GET /api/notifications?{query} HTTP/1.1", "Authorization: Bearer {token}") for query in (
        "unread=maybe", "unread=%ff", "job_id=%ff", "job_id=" + "j" * 3000, "limit=101",
    )),
    # headers
    _request("GET /api/jobs HTTP/1.1", "Authorization: Bearer \xff\xfe"),
    _request("GET /api/jobs HTTP/1.1", "Authorization: Basic dXNlcjpwYXNz"),
    _request("GET /api/jobs HTTP/1.1", "Authorization: Bearer " + "a" * 8000),
    _request("GET /api/jobs HTTP/1.1", "Authorization: Bearer"),
    _request("GET /api/jobs HTTP/1.1", "Authorization: Bearer {token}", "Authorization: Bearer other"),
    _request("GET /api/jobs/x HTTP/1.1", "Authorization: Bearer {token}", "If-None-Match: \xff\xfe"),
    _request("GET /api/jobs/x HTTP/1.1", "Authorization: Bearer {token}", "If-None-Match: *"),
    _request("GET /api/jobs HTTP/1.1", "Authorization: Bearer {token}", "Accept: \xff/\xfe"),
    _request("GET /api/jobs HTTP/1.1", "Authorization: Bearer {token}", "Origin: null"),
    _request("GET /api/jobs HTTP/1.1", "Authorization: Bearer {token}", "Cookie: \xff=\xfe"),
    _request("GET /api/jobs HTTP/1.1", "Authorization: Bearer {token}", "X_Delivery_Id: underscore"),
    _request("GET /api/jobs HTTP/1.1", "Authorization: Bearer {token}", "X-Forwarded-For: \xff, ::1, nonsense"),
    _request("GET /api/jobs HTTP/1.1", "Authorization: Bearer {token}", "Range: bytes=\xff"),
    _request("GET /healthz HTTP/1.1", "Host: second"),
    _request("GET /healthz HTTP/1.1", "Host: \xff"),
    # bodies' labels and lengths
    _request("POST /api/jobs HTTP/1.1", "Authorization: Bearer {token}", "Content-Type: ;;;", body=b"{}"),
    _request("POST /api/jobs HTTP/1.1", "Authorization: Bearer {token}", "Content-Type: application/json; charset",
             body=b"{}"),
    _request("POST /api/jobs HTTP/1.1", "Authorization: Bearer {token}", "Content-Type: \xff/\xfe", body=b"{}"),
    _request("POST /api/jobs HTTP/1.1", "Authorization: Bearer {token}", "Content-Type: application/json",
             "Idempotency-Key: \xff\xfe", body=b'{"job_type": "cover_letter"}'),
    _request("POST /api/jobs HTTP/1.1", "Authorization: Bearer {token}", "Content-Type: application/json",
             "Content-Length: 99999999999999999999"),
    _request("POST /api/jobs HTTP/1.1", "Authorization: Bearer {token}", "Content-Type: application/json",
             body=b"\x1f\x8b\x08\x00"),
    _request("POST /api/n8n/hooks/job-status HTTP/1.1", "Content-Type: application/json", "X-Timestamp: \xff",
             "X-Signature: sha256=\xff", body=b"{}"),
    _request("POST /api/webhooks/image-completion HTTP/1.1", "Content-Type: application/json",
             "X-Webhook-Secret: \xff\xfe", body=b"{}"),
    _request("POST /api/actions HTTP/1.1", "Authorization: Bearer {token}", "Content-Type: application/json",
             body=b"\xff\xfe"),
]


@pytest.mark.parametrize("request_bytes", HOSTILE_REQUESTS, ids=[r[:60].decode("latin-1") for r in HOSTILE_REQUESTS])
def test_hostile_requests_are_answered_in_json_under_500(stack, users, reliability, request_bytes):
    reliability.hostile_input("hostile methods, paths, queries and headers (raw sockets, gunicorn)")
    _, token = users("sweep")
    status, _, answer = exchange(stack, request_bytes.replace(b"{token}", token.encode()))
    assert status < 500, answer
    if status >= 400 and not request_bytes.startswith(b"HEAD "):
        assert answer["error"] and answer["message"], answer
