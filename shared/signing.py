"""Signatures over raw bytes: HMAC with timestamp, Standard Webhooks, shared secret header.

Pure functions: no Flask, no clock (`now` is passed in), tested with known-answer vectors.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

SIGNATURE_BYTES = 32  # SHA-256
MAX_SIGNATURES = 16  # in one webhook-signature header: enough for any rotation, bounded work
_TIMESTAMP = re.compile(r"^[0-9]{1,15}$")


class SignatureError(Exception):
    """A request's credentials are missing, wrong or stale: answered 401 with `code`."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Verified:
    scheme: str  # "hmac", "standard-webhooks" or "secret-header"
    webhook_id: str | None = None


def hmac_signature(secret: bytes, timestamp: int | str, body: bytes) -> str:
    """`sha256=<hex>` over `<timestamp>.<body>`: what we send and what we expect."""
    mac = hmac.new(secret, f"{timestamp}.".encode("ascii") + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def standard_webhooks_signature(secret: bytes, webhook_id: str, timestamp: int | str, body: bytes) -> str:
    """`v1,<base64>` over `<id>.<timestamp>.<body>` (standardwebhooks.com)."""
    signed = f"{webhook_id}.{timestamp}.".encode("utf-8") + body
    digest = hmac.new(secret, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {key.lower(): value for key, value in headers.items()}


def _header_bytes(value: str) -> bytes:
    # Werkzeug decodes header bytes as latin-1; encoding back gives the bytes sent.
    return value.encode("latin-1", errors="replace")


def _timestamp(raw: str, now: float, tolerance: int) -> None:
    raw = raw.strip()
    if not _TIMESTAMP.match(raw):
        raise SignatureError("invalid_signature", "the timestamp must be an integer number of seconds")
    if abs(now - int(raw)) > tolerance:
        raise SignatureError(
            "stale_timestamp", f"the timestamp is more than {tolerance} seconds away from our clock"
        )


def _any_match(expected: Iterable[bytes], given: bytes) -> bool:
    matched = False
    for candidate in expected:
        # No early exit: every secret is compared, whichever matches.
        matched |= hmac.compare_digest(candidate, given)
    return matched


def _verify_hmac(secrets, h, body, now, tolerance) -> Verified:
    raw_ts = h.get("x-timestamp")
    if raw_ts is None:
        raise SignatureError("missing_signature", "X-Signature needs its X-Timestamp header")
    signature = h["x-signature"].strip()
    if signature.lower().startswith("sha256="):
        signature = signature[len("sha256="):]
    try:
        given = bytes.fromhex(signature)
    except ValueError:
        given = b""
    if len(given) != SIGNATURE_BYTES:
        raise SignatureError("invalid_signature", "X-Signature must be sha256=<64 hex digits>")
    ts = raw_ts.strip()
    expected = [
        hmac.new(s, _header_bytes(ts) + b"." + body, hashlib.sha256).digest() for s in secrets
    ]
    if not _any_match(expected, given):
        raise SignatureError("invalid_signature", "X-Signature does not match the body and X-Timestamp")
    _timestamp(ts, now, tolerance)
    return Verified("hmac")


def _verify_standard(secrets, h, body, now, tolerance) -> Verified:
    webhook_id, ts, header = h.get("webhook-id"), h.get("webhook-timestamp"), h.get("webhook-signature")
    if not webhook_id or not ts or not header:
        raise SignatureError(
            "missing_signature", "webhook-id, webhook-timestamp and webhook-signature go together"
        )
    signed = _header_bytes(webhook_id) + b"." + _header_bytes(ts.strip()) + b"." + body
    expected = [hmac.new(s, signed, hashlib.sha256).digest() for s in secrets]
    entries = header.split()
    if len(entries) > MAX_SIGNATURES:
        raise SignatureError("invalid_signature", f"webhook-signature carries more than {MAX_SIGNATURES} signatures")
    matched = False
    for entry in entries:
        version, _, value = entry.partition(",")
        if version != "v1":
            continue
        try:
            given = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(given) == SIGNATURE_BYTES and _any_match(expected, given):
            matched = True
    if not matched:
        raise SignatureError("invalid_signature", "no v1 signature in webhook-signature matches")
    _timestamp(ts, now, tolerance)
    return Verified("standard-webhooks", webhook_id=webhook_id)


def _verify_secret_header(secrets, h) -> Verified:
    if not _any_match(secrets, _header_bytes(h["x-webhook-secret"])):
        raise SignatureError("invalid_signature", "X-Webhook-Secret is not the configured secret")
    return Verified("secret-header")


def verify(
    secrets: tuple[bytes, ...],
    headers: Mapping[str, str],
    body: bytes,
    now: float,
    tolerance: int = 300,
    allow_secret_header: bool = False,
) -> Verified:
    """Check a request's credentials against any of `secrets`; raise SignatureError if they fail."""
    h = _lower(headers)
    if "webhook-signature" in h or "webhook-id" in h:
        return _verify_standard(secrets, h, body, now, tolerance)
    if "x-signature" in h:
        return _verify_hmac(secrets, h, body, now, tolerance)
    if allow_secret_header and "x-webhook-secret" in h:
        return _verify_secret_header(secrets, h)
    if "x-webhook-secret" in h:
        raise SignatureError("invalid_signature", "X-Webhook-Secret is not accepted here: sign the body")
    raise SignatureError(
        "missing_signature", "sign the request: X-Timestamp and X-Signature, or Standard Webhooks headers"
    )
