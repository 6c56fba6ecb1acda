"""Signatures over raw bytes: HMAC with timestamp, Standard Webhooks, shared secret header.

Pure functions: no Flask, no clock (`now` is passed in), tested with known-answer vectors.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

SIGNATURE_BYTES = 32  # SHA-256
MAX_SIGNATURES = 16  # in one webhook-signature header: enough for any rotation, bounded work
# Whole strings only (fullmatch): `$` would also match before a trailing newline.
_TIMESTAMP = re.compile(r"[0-9]{1,15}")
_HEX_SIGNATURE = re.compile(r"(?:sha256=)?([0-9a-f]{64})", re.IGNORECASE | re.ASCII)
_BASE64_SIGNATURE = re.compile(r"[A-Za-z0-9+/]{43}=")
# What HTTP trims around a header value; anything else inside it is part of the value.
_OWS = " \t"


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
    # HMAC scheme: the verified MAC as 64 lowercase hex digits, however the sender spelled
    # it. The only thing a replay cannot change, since X-Delivery-Id and Idempotency-Key
    # are not signed: it identifies the request.
    signature: str | None = None


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
    if not _TIMESTAMP.fullmatch(raw):
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
    # Exactly 64 hex digits: bytes.fromhex alone also takes spaces between them.
    spelled = _HEX_SIGNATURE.fullmatch(h["x-signature"].strip(_OWS))
    if spelled is None:
        raise SignatureError("invalid_signature", "X-Signature must be sha256=<64 hex digits>")
    given = bytes.fromhex(spelled.group(1))
    ts = raw_ts.strip(_OWS)
    expected = [
        hmac.new(s, _header_bytes(ts) + b"." + body, hashlib.sha256).digest() for s in secrets
    ]
    if not _any_match(expected, given):
        raise SignatureError("invalid_signature", "X-Signature does not match the body and X-Timestamp")
    _timestamp(ts, now, tolerance)
    return Verified("hmac", signature=given.hex())


def _verify_standard(secrets, h, body, now, tolerance) -> Verified:
    webhook_id, ts, header = (
        h.get(name, "").strip(_OWS) for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
    )
    if not webhook_id or not ts or not header:
        raise SignatureError(
            "missing_signature", "webhook-id, webhook-timestamp and webhook-signature go together"
        )
    signed = _header_bytes(webhook_id) + b"." + _header_bytes(ts) + b"." + body
    expected = [hmac.new(s, signed, hashlib.sha256).digest() for s in secrets]
    entries = [entry for entry in header.split(" ") if entry]
    if len(entries) > MAX_SIGNATURES:
        raise SignatureError("invalid_signature", f"webhook-signature carries more than {MAX_SIGNATURES} signatures")
    matched = False
    for entry in entries:
        version, _, value = entry.partition(",")
        # The one spelling of 32 bytes: b64decode alone ignores the two bits after the last
        # byte, so four spellings would decode to the same signature.
        if version != "v1" or not _BASE64_SIGNATURE.fullmatch(value):
            continue
        given = base64.b64decode(value)
        if base64.b64encode(given).decode("ascii") == value and _any_match(expected, given):
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
