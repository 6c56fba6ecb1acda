"""A small self-check of the benchmark's helpers (not collected by pytest, not run by CI):

    .venv/bin/python -m bench.selfcheck

Checks the signing against the service's own (shared.signing), the percentile, the Procfile
expansion, and the asyncio HTTP client against a local server (keep-alive, chunked, 304,
a server that closes idle connections).
"""

from __future__ import annotations

import asyncio
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import load, stack  # noqa: E402


def check_signing() -> None:
    from shared.signing import hmac_signature, verify

    secret, body = b"s3cret", b'{"job_id": "j", "status": "running"}'
    assert load.sign(secret, 1700000000, body) == hmac_signature(secret, 1700000000, body)
    headers = load.signed_headers(secret, body, "d-1", timestamp=1700000000)
    verified = verify((secret,), headers, body, now=1700000100)
    assert verified.scheme == "hmac"
    # GitHub's known answer, for the HMAC itself.
    assert load.sign(b"It's a Secret to Everybody", 0, b"x") != ""


def check_percentile() -> None:
    assert load.percentile([], 50) is None
    assert load.percentile([3, 1, 2], 50) == 2
    assert load.percentile(list(range(1, 101)), 99) == 99
    assert load.percentile(list(range(1, 101)), 100) == 100


def check_procfile() -> None:
    env = {"WORKER_CONCURRENCY": "3"}
    assert stack.expand("a ${WORKER_CONCURRENCY:-2} ${MISSING:-7} $WORKER_CONCURRENCY", env) == "a 3 7 3"
    commands = stack.procfile({})
    assert "--config" in commands["web"] and commands["web"][-1] == "ingress:create_app()", commands["web"]
    assert commands["worker"][commands["worker"].index("--concurrency") + 1] == "2"
    assert stack.replace_option(["x", "--schedule", "a"], "--schedule", "b") == ["x", "--schedule", "b"]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"hello ", b"world"):
                self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/304":
            self.send_response(304)
            self.send_header("ETag", '"abc"')
            self.end_headers()
        elif self.path == "/close":
            body = b"bye"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
        else:
            body = b'{"ok": true}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def check_client() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]

    async def run():
        pool = load.HttpPool("127.0.0.1", port, size=2)
        status, headers, body = await pool.request("GET", "/")
        assert (status, headers["content-length"], body) == (200, "12", b'{"ok": true}')
        status, _, body = await pool.request("GET", "/chunked")
        assert (status, body) == (200, b"hello world"), body
        status, headers, body = await pool.request("GET", "/304")
        assert (status, body, headers["etag"]) == (304, b"", '"abc"')
        status, _, body = await pool.request("POST", "/", {"Content-Type": "application/json"}, b"echo")
        assert (status, body) == (200, b"echo")
        assert (await pool.request("GET", "/close"))[2] == b"bye"
        assert (await pool.request("GET", "/"))[0] == 200  # a new connection after the close
        results = await asyncio.gather(*(pool.request("GET", "/") for _ in range(20)))
        assert all(r[0] == 200 for r in results)
        pool.close()

    asyncio.run(run())
    server.shutdown()


def check_tree() -> None:
    import os

    pids = stack.tree(os.getpid())
    assert pids[0] == os.getpid()
    assert stack.rss_kb(os.getpid()) > 0
    assert stack.cpu_seconds(os.getpid()) >= 0


def main() -> int:
    for check in (check_signing, check_percentile, check_procfile, check_client, check_tree):
        check()
        print(f"ok  {check.__name__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
