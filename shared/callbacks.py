"""Inbound webhook endpoints: how each payload is validated and read as one Callback."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from marshmallow import Schema, ValidationError

from shared import lifecycle, schemas


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
    # What a completion produced: {"images": [...], "metadata": {...}} or {"book": {...}}.
    artifacts: dict | None = None
    payload: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Endpoint:
    name: str  # the path segment, stored in Delivery.endpoint
    path: str
    secrets_attr: str  # the Settings attribute holding this endpoint's secrets
    schema: Schema
    read: Callable[[dict, dict], Callback]  # (validated data, the payload as sent)
    job_type: str  # of a job auto-created from this endpoint's callbacks
    allow_secret_header: bool = False
    # The backends' own documentation annotates payloads with `// ...` (seed 002).
    tolerate_comments: bool = False


MAX_DEPTH = 32  # of nested objects and arrays; senders' payloads need a handful
# NUL and lone surrogates (JSON allows "\\u0000" and "\\ud800"): no text column stores them.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> bool:
    """Whether a text column can hold `text`: no NUL, no lone surrogate."""
    return not _UNSTORABLE.search(text)


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")  # NaN, Infinity: Python accepts them, PostgreSQL does not


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")  # 1e999 would become Infinity
    return value


# Built once: json.loads with these hooks builds a new decoder on every call.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite)


def parse_json(body: bytes) -> Any:
    """Decode a raw body, or raise PayloadError: invalid_json, or validation_error when it
    nests deeper than MAX_DEPTH or carries NUL characters (no column can store them)."""
    try:
        value = _DECODER.decode(body.decode("utf-8-sig"))
    except RecursionError:
        raise PayloadError("validation_error", f"the body nests deeper than {MAX_DEPTH} levels") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise PayloadError("invalid_json", f"the body is not valid UTF-8 JSON: {exc}") from None
    _check_shape(value)
    return value


def _check_shape(value: Any) -> None:
    """Refuse what no column can store, naming where it is: {"data.images.0.url": [...]}."""
    stack = [(value, 1, "")]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, str):
            if _UNSTORABLE.search(item):
                _refuse(path, "Must not contain NUL or lone surrogate characters.")
            continue
        if not isinstance(item, (dict, list)):
            continue
        if depth > MAX_DEPTH:
            _refuse(path, f"Nests deeper than {MAX_DEPTH} levels.")
        pairs = item.items() if isinstance(item, dict) else enumerate(item)
        for key, child in pairs:
            where = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and _UNSTORABLE.search(key):
                _refuse(where, "Keys must not contain NUL or lone surrogate characters.")
            stack.append((child, depth + 1, where))


def _refuse(path: str, message: str):
    raise PayloadError("validation_error", "the body holds values that cannot be stored", {path or "body": [message]})


def strip_line_comments(text: str) -> str:
    """Remove `// ...` to the end of the line, outside JSON strings."""
    out, i, in_string = [], 0, False
    while i < len(text):
        char = text[i]
        if in_string:
            if char == "\\":  # an escape: keep it and the character it escapes
                out.append(text[i:i + 2])
                i += 2
                continue
            in_string = char != '"'
        elif char == '"':
            in_string = True
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        out.append(char)
        i += 1
    return "".join(out)


def load(endpoint: Endpoint, body: bytes) -> Callback:
    """Validate a raw body against the endpoint's schema and read it as a Callback."""
    try:
        payload = parse_json(body)
    except PayloadError:
        if not endpoint.tolerate_comments or b"//" not in body:
            raise
        payload = parse_json(strip_line_comments(body.decode("utf-8", errors="replace")).encode())
    if not isinstance(payload, dict):
        raise PayloadError("validation_error", "the body must be a JSON object")
    try:
        data = endpoint.schema.load(payload)
    except ValidationError as exc:
        raise PayloadError("validation_error", "the payload is not valid", exc.normalized_messages()) from None
    # The event keeps the sender's payload as sent, not our normalised reading of it.
    return endpoint.read(data, payload)


def _read_job_status(data: dict, payload: dict) -> Callback:
    return Callback(
        job_id=data["job_id"].strip(),
        word=data["status"],
        progress=data.get("progress"),
        message=data.get("message"),
        result=data.get("result"),
        error=data.get("error"),
        user_id=data.get("user_id"),
        job_type=data.get("job_type"),
        payload=payload,
    )


def _sender_error(data: dict):
    return data.get("error_message") or data.get("message")


def _read_image_completion(data: dict, payload: dict) -> Callback:
    image_data = data.get("data") or {}
    images = image_data.get("images") or []
    succeeded = lifecycle.canonical(data["status"]) == lifecycle.SUCCEEDED
    metadata = image_data.get("metadata") or {}
    return Callback(
        job_id=data["job_id"].strip(),
        word=data["status"],
        progress=data.get("progress"),
        message=data.get("message"),
        result={"images_count": len(images), "model": metadata.get("model_name"),
                "generated_at": image_data.get("generated_at")} if succeeded else None,
        error=_sender_error(data),
        user_id=data.get("user_id"),
        artifacts={"images": images, "metadata": metadata} if succeeded else None,
        payload=payload,
    )


def _read_book_completion(data: dict, payload: dict) -> Callback:
    book = data.get("book_data") or {}
    succeeded = lifecycle.canonical(data["status"]) == lifecycle.SUCCEEDED
    return Callback(
        job_id=data["job_id"].strip(),
        word=data["status"],
        progress=data.get("progress"),
        message=data.get("message"),
        result={"book_title": book.get("book_title"), "chapter_count": len(book.get("chapters") or []),
                "word_count": book.get("word_count")} if succeeded else None,
        error=_sender_error(data),
        user_id=data.get("user_id"),
        artifacts={"book": book} if succeeded else None,
        payload=payload,
    )


JOB_STATUS = Endpoint(
    name="n8n.job-status",
    path="/api/n8n/hooks/job-status",
    secrets_attr="n8n_webhook_secrets",
    schema=schemas.job_status_callback_schema,
    read=_read_job_status,
    job_type="external",
)
IMAGE_COMPLETION = Endpoint(
    name="backend.image-completion",
    path="/api/webhooks/image-completion",
    secrets_attr="webhook_secrets",
    schema=schemas.image_completion_schema,
    read=_read_image_completion,
    job_type="image_generation",
    allow_secret_header=True,
    tolerate_comments=True,
)
BOOK_COMPLETION = Endpoint(
    name="backend.book-completion",
    path="/api/webhooks/book-completion",
    secrets_attr="webhook_secrets",
    schema=schemas.book_completion_schema,
    read=_read_book_completion,
    job_type="book_generation",
    allow_secret_header=True,
    tolerate_comments=True,
)

ENDPOINTS: dict[str, Endpoint] = {e.name: e for e in (JOB_STATUS, IMAGE_COMPLETION, BOOK_COMPLETION)}
