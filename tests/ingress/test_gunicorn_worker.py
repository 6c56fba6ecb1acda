"""ingress/gunicorn_worker.py, in-process: where gunicorn answers itself, the answer is the
contract's JSON error, and the connection closes. Real gunicorn: tests/ingress/test_gunicorn.py."""

from __future__ import annotations

import json
import socket

import pytest

from ingress.gunicorn_worker import write_json_error


def written(status: int, reason: str, mesg: str) -> tuple[bytes, dict[str, str], dict]:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        write_json_error(ours, status, reason, mesg)
        ours.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := theirs.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    assert int(headers["Content-Length"]) == len(body)
    return status_line.encode(), headers, json.loads(body)


@pytest.mark.parametrize(
    "status, reason, code",
    [(414, "Request-URI Too Long", "uri_too_long"), (431, "Request Header Fields Too Large",
                                                     "request_header_fields_too_large")],
)
def test_gunicorns_own_refusals_are_the_contracts_json_and_close_the_connection(status, reason, code):
    status_line, headers, body = written(status, reason, "the limit was passed")
    assert status_line == f"HTTP/1.1 {status} {reason}".encode()
    assert (headers["Connection"], headers["Content-Type"]) == ("close", "application/json")
    assert body == {"error": code, "message": "the limit was passed"}


def test_an_unsupported_transfer_encoding_is_the_clients_400_not_a_5xx():
    status_line, _, body = written(501, "Not Implemented", "Unsupported transfer coding: 'gzip'")
    assert status_line == b"HTTP/1.1 400 Bad Request"
    assert body == {"error": "bad_request", "message": "Unsupported transfer coding: 'gzip'"}
