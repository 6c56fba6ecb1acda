"""gunicorn's gevent worker, answering in the contract's JSON where gunicorn answers itself.

gunicorn refuses what it cannot parse (a malformed request line or header, a request line
over 4094 bytes, too many or too large headers) before the application sees the request,
with an HTML page of its own, written by `gunicorn.util.write_error`. This worker writes
those answers as `{"error", "message"}` instead, and honours an application's
`Connection: close` (gunicorn drops the header the application sets).
"""

from __future__ import annotations

import json

from gunicorn import util
from gunicorn.workers.ggevent import GeventWorker

from ingress.errors import HTTP_CODES


class Worker(GeventWorker):
    def init_process(self):
        # Every page gunicorn writes in this process (Worker.handle_error calls it).
        util.write_error = write_json_error
        super().init_process()

    def load_wsgi(self):
        super().load_wsgi()
        self.wsgi = _closing_on_request(self.wsgi)


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn.util.write_error's signature, writing the contract's JSON error."""
    if status_int == 501:
        # An unsupported Transfer-Encoding: what the client sent, not a server fault (§2: no 5xx).
        status_int, reason = 400, "Bad Request"
    if status_int >= 500:
        code, message = "internal_error", "an unexpected error occurred; it has been logged"
    else:
        code, message = HTTP_CODES.get(status_int, "bad_request"), mesg or reason
    body = json.dumps({"error": code, "message": message}).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)


def _closing_on_request(app):
    """Close the connection after an answer whose application set `Connection: close` (a body
    that arrived malformed or too slowly: where the next request starts is unknown)."""

    def wsgi(environ, start_response):
        def start(status, headers, exc_info=None):
            if any(name.lower() == "connection" and value.strip().lower() == "close" for name, value in headers):
                start_response.__self__.force_close()  # gunicorn's Response
            return start_response(status, headers, exc_info)

        return app(environ, start)

    return wsgi
