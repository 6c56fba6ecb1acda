"""Inbound webhook endpoints: how each payload is validated and read as one Callback."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from marshmallow import Schema, ValidationError

from shared import schemas


class PayloadError(ValueError):
    """The body is not a JSON object this endpoint accepts (400 with `code` and `details`)."""

    def __init__(self, code: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


@dataclass(frozen=True)
class Callback:
    """A sender's status report, whatever endpoint it came through."""

    job_id: str
    word: str
    progress: int | None = None
    message: str | None = None
    result: Any = None
    error: Any = None
    user_id: str | None = None
    job_type: str | None = None
    payload: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Endpoint:
    name: str  # the path segment, stored in Delivery.endpoint
    path: str
    secrets_attr: str  # the Settings attribute holding this endpoint's secrets
    schema: Schema
    read: Callable[[dict], Callback]
    allow_secret_header: bool = False


def parse_json(body: bytes) -> Any:
    """Decode a raw body, or raise PayloadError(invalid_json)."""
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise PayloadError("invalid_json", f"the body is not valid UTF-8 JSON: {exc}") from None


def load(endpoint: Endpoint, body: bytes) -> Callback:
    """Validate a raw body against the endpoint's schema and read it as a Callback."""
    payload = parse_json(body)
    if not isinstance(payload, dict):
        raise PayloadError("validation_error", "the body must be a JSON object")
    try:
        data = endpoint.schema.load(payload)
    except ValidationError as exc:
        raise PayloadError("validation_error", "the payload is not valid", exc.normalized_messages()) from None
    # The event keeps the sender's payload as sent, not our normalised reading of it.
    return replace(endpoint.read(data), payload=payload)


def _read_job_status(data: dict) -> Callback:
    return Callback(
        job_id=data["job_id"].strip(),
        word=data["status"],
        progress=data.get("progress"),
        message=data.get("message"),
        result=data.get("result"),
        error=data.get("error"),
        user_id=data.get("user_id"),
        job_type=data.get("job_type"),
    )


JOB_STATUS = Endpoint(
    name="n8n.job-status",
    path="/api/n8n/hooks/job-status",
    secrets_attr="n8n_webhook_secrets",
    schema=schemas.job_status_callback_schema,
    read=_read_job_status,
)

ENDPOINTS: dict[str, Endpoint] = {e.name: e for e in (JOB_STATUS,)}
