"""Reading requests: the raw body once, within the limit, then JSON; the query; Idempotency-Key.

What the loading schemas raise (marshmallow's ValidationError, PayloadError) is answered by
ingress/errors.py."""

from __future__ import annotations

import gevent
from flask import current_app, request
from gunicorn.http.errors import ParseException
from marshmallow import Schema
from werkzeug.exceptions import ClientDisconnected

from ingress.errors import ApiError
from shared.callbacks import parse_json


def raw_body() -> bytes:
    """The request body as sent, or 413.

    Werkzeug truncates an over-limit *chunked* body to MAX_CONTENT_LENGTH and goes on; the
    app sets that one byte above the real limit, so a body reaching it was cut: refuse it.
    """
    limit = current_app.config["BODY_LIMIT"]
    body = request.get_data(cache=True)
    if len(body) > limit:
        raise ApiError(413, "payload_too_large", f"the body is larger than {limit} bytes")
    return body


def read_body() -> None:
    """Read a request's whole body before anything else (before_request), within
    BODY_READ_TIMEOUT: 408 when it does not arrive in time, 400 when its framing is broken,
    415 when it is compressed.

    Read first, so that a client sending its body slowly, or never, holds no database
    connection (a token lookup would have opened a transaction) and cannot keep this
    process's pool busy. The deadline is gevent's: the body is read by this greenlet (under
    any other server it never fires, and the server's own timeouts apply).
    """
    environ = request.environ
    if not (request.content_length or "HTTP_TRANSFER_ENCODING" in environ):
        return
    seconds = current_app.extensions["settings"].body_read_timeout
    body = None
    try:
        with gevent.Timeout(seconds, False):
            body = request.get_data(cache=True)
    except (ParseException, ClientDisconnected, OSError, ValueError) as exc:
        # What the server's reader raises on a malformed chunk size, a chunk without its
        # CRLF, a bad trailer, and Werkzeug on a connection closed mid-body: where the next
        # request would start is unknown, so the connection closes.
        raise ApiError(400, "bad_request", f"the request body is not framed correctly ({type(exc).__name__})",
                       headers=_CLOSE) from None
    if body is None:
        raise ApiError(408, "request_timeout", f"the request body did not arrive within {seconds:g} s",
                       headers=_CLOSE)
    # Nothing here decodes a compressed body (nor a transfer coding gunicorn passes on):
    # parsed as it is, it would be refused as invalid JSON, or taken as sent when mislabelled.
    content_coding = environ.get("HTTP_CONTENT_ENCODING", "").strip().lower()
    transfer_codings = {part.strip() for part in environ.get("HTTP_TRANSFER_ENCODING", "").lower().split(",")}
    if content_coding not in ("", "identity") or transfer_codings - {"", "chunked"}:
        raise ApiError(415, "unsupported_media_type", "send the body uncompressed, without Content-Encoding")


# The server (ingress/gunicorn_worker.py) closes the connection after this answer.
_CLOSE = {"Connection": "close"}


def require_json_content_type() -> None:
    """415 unless the body is labelled JSON, in UTF-8 (the only encoding JSON has, RFC 8259)."""
    mimetype = request.mimetype
    if mimetype and mimetype != "application/json" and not mimetype.endswith("+json"):
        raise ApiError(415, "unsupported_media_type", "send Content-Type: application/json")
    charset = request.mimetype_params.get("charset")
    if charset is not None and charset.strip().lower() not in ("utf-8", "utf8"):
        raise ApiError(415, "unsupported_media_type", "send the JSON body in UTF-8 (charset=utf-8)")


def json_object(schema: Schema) -> dict:
    """A JSON-object body loaded by `schema` (400 invalid_json / validation_error)."""
    require_json_content_type()
    body = raw_body()
    payload = parse_json(body) if body.strip() else {}
    if not isinstance(payload, dict):
        raise ApiError(400, "validation_error", "the body must be a JSON object")
    return schema.load(payload)


def query(schema: Schema) -> dict:
    """The query string loaded by `schema` (400 validation_error)."""
    # Repeated query keys are refused rather than silently reduced to the first.
    args = request.args.to_dict(flat=False)
    repeated = {key: ["Given more than once."] for key, values in args.items() if len(values) > 1}
    if repeated:
        raise ApiError(400, "validation_error", "a query parameter is repeated", repeated)
    return schema.load({key: values[0] for key, values in args.items()})


def idempotency_key() -> str | None:
    """The request's Idempotency-Key, trimmed (None without one); 400 unless 1 to 255 characters."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key.strip()) <= 255:
        raise ApiError(400, "validation_error", "Idempotency-Key must be 1 to 255 characters")
    return key.strip()


def refuse_nul_in_url_and_headers() -> None:
    """400 for NUL characters in the path, query or headers: no column can hold them, and
    the database driver would fail on them deep in a query (a 500 otherwise).

    Read off the WSGI environ: the query's only spelling of NUL is %00, and parsing it and
    the headers into Werkzeug's structures cost every request more than the check.
    """
    environ = request.environ
    query = environ.get("QUERY_STRING", "")
    if (
        "\x00" in request.path or "\x00" in query or "%00" in query
        or any("\x00" in value for key, value in environ.items() if key.startswith(_HEADER_KEYS))
    ):
        raise ApiError(400, "validation_error", "NUL characters are not allowed in URLs or headers")


_HEADER_KEYS = ("HTTP_", "CONTENT_TYPE", "CONTENT_LENGTH")


def lowercase_headers() -> dict[str, str]:
    """The request's headers by lowercase name, in one pass over the WSGI environ (what
    Werkzeug's request.headers gives, without a lookup that transforms every key)."""
    return {
        (key[5:] if key.startswith("HTTP_") else key).replace("_", "-").lower(): value
        for key, value in request.environ.items()
        if key.startswith(_HEADER_KEYS)
    }
