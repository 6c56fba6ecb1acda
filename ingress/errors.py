"""Every failure's answer, declared once: {"error", "message", "details"} (CONTRACT §2).

Views and the functions they call raise the domain's own exceptions; ANSWERS maps each one
to its status, code, message, details and headers, and nothing else translates them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Flask, current_app, jsonify, request
from marshmallow import ValidationError
from sqlalchemy.exc import DBAPIError, TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from ingress.recorder import RecordTimeout
from shared.callbacks import PayloadError
from shared.errors import BadCursor, Conflict, NotFound
from shared.schemas import error_schema
from shared.signing import SignatureError

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "5"

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    409: "conflict",
    411: "length_required",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    417: "expectation_failed",
    429: "rate_limited",
    431: "request_header_fields_too_large",
}


class ApiError(Exception):
    """An answer other than success, with its stable snake_case code: what the ingress
    itself refuses (credentials, limits, media types) and what ANSWERS makes of the rest."""

    def __init__(self, status: int, code: str, message: str, details: dict | None = None, headers=None):
        super().__init__(message)
        self.http_status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}


def _unavailable(message: str) -> ApiError:
    return ApiError(503, "unavailable", message, headers={"Retry-After": RETRY_AFTER_SECONDS})


def _refused_signature(exc: SignatureError) -> ApiError:
    log.info("%s refused: %s (%s)", request.path, exc.code, exc.message)
    return ApiError(401, exc.code, exc.message)


def _database_down(exc: Exception) -> ApiError:
    log.error("database unavailable: %s", exc.__class__.__name__, exc_info=exc)
    return _unavailable("the database is unavailable; try again shortly")


def _http(exc: HTTPException) -> ApiError:
    status = exc.code or 500
    code = HTTP_CODES.get(status, "bad_request" if status < 500 else "unavailable")
    message = exc.description or exc.name
    if status == 413:
        message = f"the body is larger than {current_app.config['BODY_LIMIT']} bytes"
    # Werkzeug's own headers (405's Allow, 416's Content-Range), not its HTML's type.
    headers = {name: value for name, value in exc.get_headers() if name.lower() != "content-type"}
    return ApiError(status, code, message, headers=headers)


def _unexpected(exc: Exception) -> ApiError:
    log.exception("unhandled error")
    return ApiError(500, "internal_error", "an unexpected error occurred; it has been logged")


# Flask picks the entry of the exception's nearest class: DBAPIError covers OperationalError.
ANSWERS: dict[type[Exception], Callable[[Exception], ApiError]] = {
    ApiError: lambda exc: exc,
    ValidationError: lambda exc: ApiError(400, "validation_error", "the request is not valid",
                                          exc.normalized_messages()),
    PayloadError: lambda exc: ApiError(400, exc.code, exc.message, exc.details),
    BadCursor: lambda exc: ApiError(400, "validation_error", str(exc), {"cursor": [str(exc)]}),
    SignatureError: _refused_signature,
    NotFound: lambda exc: ApiError(404, "not_found", exc.message),
    Conflict: lambda exc: ApiError(409, exc.code, exc.message),
    RecordTimeout: lambda exc: _unavailable(str(exc)),
    DBAPIError: _database_down,
    PoolTimeout: _database_down,  # every pooled connection busy for longer than DATABASE_TIMEOUT
    HTTPException: _http,
    Exception: _unexpected,
}


def error_response(error: ApiError):
    response = jsonify(error_schema.dump(error))
    response.status_code = error.http_status
    response.headers.update(error.headers)
    return response


def register(app: Flask) -> None:
    for exc_type, answer in ANSWERS.items():
        app.register_error_handler(exc_type, lambda exc, answer=answer: error_response(answer(exc)))
