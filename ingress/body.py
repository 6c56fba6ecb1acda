"""Reading request bodies: the raw bytes once, within the limit, then JSON."""

from __future__ import annotations

from flask import current_app, request
from marshmallow import Schema, ValidationError

from ingress.errors import ApiError
from shared.callbacks import PayloadError, parse_json


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


def require_json_content_type() -> None:
    mimetype = request.mimetype
    if mimetype and mimetype != "application/json" and not mimetype.endswith("+json"):
        raise ApiError(415, "unsupported_media_type", "send Content-Type: application/json")


def json_object(schema: Schema) -> dict:
    """Validate a JSON-object body against `schema`; 400 invalid_json / validation_error."""
    require_json_content_type()
    body = raw_body()
    try:
        payload = parse_json(body) if body.strip() else {}
    except PayloadError as exc:
        raise ApiError(400, exc.code, exc.message, exc.details) from None
    if not isinstance(payload, dict):
        raise ApiError(400, "validation_error", "the body must be a JSON object")
    return load(schema, payload)


def load(schema: Schema, data) -> dict:
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise ApiError(400, "validation_error", "the request is not valid", exc.normalized_messages()) from None


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
