"""A local HTTP server in n8n's place: checks our dispatches and answers as scripted.

A job's params script the answer: `respond: [503, 502, 200]` gives the status of each
request for the job in turn, `answer_id: "x"` answers `{"job_id": "x"}` (a backend's own id), and
`callback: true` makes it call back signed afterwards, as an n8n workflow does, and
`retry_after: N` adds that header to an error answer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests


@dataclass
class Received:
    path: str
    headers: dict
    body: bytes
    payload: dict
    signature_ok: bool
    api_key_ok: bool


class N8nStandIn:
    def __init__(self, secret: bytes, api_key: str):
        self.secret = secret
        self.api_key = api_key
        self.received: list[Received] = []
        self.callback_base: str | None = None
        self.callback_errors: list[str] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def url(self, path: str) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{path}"

    def for_job(self, job_id: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.payload.get("job_id") == job_id]

    def verify(self, headers: dict, body: bytes) -> bool:
        ts = headers.get("x-timestamp", "")
        given = headers.get("x-signature", "")
        expected = "sha256=" + hmac.new(self.secret, f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
        fresh = ts.isdigit() and abs(time.time() - int(ts)) <= 300
        return fresh and hmac.compare_digest(given, expected)

    def start(self) -> None:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self.send_response(200)
                self.end_headers()

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    payload = json.loads(body)
                except ValueError:
                    payload = {}
                received = Received(
                    self.path, headers, body, payload,
                    signature_ok=standin.verify(headers, body),
                    api_key_ok=headers.get("x-api-key") == standin.api_key,
                )
                with standin._lock:
                    standin.received.append(received)
                status, answer = standin.answer(received)
                data = json.dumps(answer).encode()
                self.send_response(status)
                retry_after = (received.payload.get("params") or {}).get("retry_after")
                if status >= 300 and retry_after:
                    self.send_header("Retry-After", str(retry_after))
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def answer(self, received: Received) -> tuple[int, dict]:
        if not (received.signature_ok and received.api_key_ok):
            return 403, {"message": "Authorization data is wrong!"}
        params = received.payload.get("params") or {}
        script = params.get("respond") or [200]
        # The n-th request for a job gets the n-th answer, across retries of the job.
        nth = len(self.for_job(received.payload.get("job_id")))
        status = int(script[min(nth, len(script)) - 1])
        if status == 404:
            return 404, {"code": 404, "message": 'The requested webhook "POST ai-job" is not registered.'}
        if status >= 300:
            return status, {"message": "Error in workflow"}
        if params.get("callback"):
            threading.Thread(target=self._call_back, args=(received.payload,), daemon=True).start()
        if params.get("answer_id"):
            return status, {"job_id": params["answer_id"], "status": "accepted"}
        return status, {"message": "Workflow was started"}

    def _call_back(self, dispatch: dict) -> None:
        """Report progress then success, each body signed as the example workflow does."""
        time.sleep(0.3)  # after our dispatch's answer is recorded, as a real workflow would be
        for update in (
            {"job_id": dispatch["job_id"], "status": "running", "progress": 40, "message": "generating"},
            {"job_id": dispatch["job_id"], "status": "succeeded", "progress": 100, "result": {"text": "done"}},
        ):
            self.post_callback(dispatch["callback_url"], update)

    def post_callback(self, url: str, payload: dict) -> requests.Response:
        body = json.dumps(payload).encode()
        ts = str(int(time.time()))
        signature = "sha256=" + hmac.new(self.secret, f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
        response = requests.post(
            url, data=body, timeout=10,
            headers={"Content-Type": "application/json", "X-Timestamp": ts, "X-Signature": signature},
        )
        if response.status_code != 200:
            self.callback_errors.append(f"{response.status_code} {response.text}")
        return response
