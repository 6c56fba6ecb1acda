"""One JSON error shape for every failure: {"error", "message", "details"} (CONTRACT §2)."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from sqlalchemy.exc import DBAPIError, OperationalError, TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

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
    """An answer other than success, with its stable snake_case code."""

    def __init__(self, status: int, code: str, message: str, details: dict | None = None, headers=None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}


def error_response(status: int, code: str, message: str, details=None, headers=None):
    body = {"error": code, "message": message}
    if details:
        body["details"] = details
    response = jsonify(body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def unavailable(message: str) -> ApiError:
    return ApiError(503, "unavailable", message, headers={"Retry-After": RETRY_AFTER_SECONDS})


def register(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        status = exc.code or 500
        code = HTTP_CODES.get(status, "bad_request" if status < 500 else "unavailable")
        message = exc.description or exc.name
        if status == 413:
            message = f"the body is larger than {app.config['BODY_LIMIT']} bytes"
        # Werkzeug's own headers (405's Allow, 416's Content-Range), not its HTML's type.
        headers = {name: value for name, value in exc.get_headers() if name.lower() != "content-type"}
        return error_response(status, code, message, headers=headers)

    @app.errorhandler(OperationalError)
    @app.errorhandler(DBAPIError)
    @app.errorhandler(PoolTimeout)  # every pooled connection is busy for longer than DATABASE_TIMEOUT
    def _database_down(exc):
        log.error("database unavailable: %s", exc.__class__.__name__, exc_info=exc)
        return error_response(
            503, "unavailable", "the database is unavailable; try again shortly",
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        )

    @app.errorhandler(Exception)
    def _unexpected(exc):
        log.exception("unhandled error")
        return error_response(500, "internal_error", "an unexpected error occurred; it has been logged")
