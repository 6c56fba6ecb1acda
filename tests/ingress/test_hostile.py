"""Hostile signed requests, table-driven: each with its expected status and error code.

The ingress runs with a fixed clock so that "exactly the tolerance" is exact.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import replace

import pytest

from helpers import hmac_headers, standard_headers
from helpers.env import N8N_SECRET
from shared.signing import hmac_signature

HOOK = "/api/n8n/hooks/job-status"
NOW = 1_800_000_000
TOLERANCE = 300
SECRET = N8N_SECRET.encode()


@pytest.fixture(scope="module")
def hostile_client(settings):
    from ingress import create_app

    app = create_app(replace(settings, tolerance_seconds=TOLERANCE))
    app.extensions["clock"] = lambda: NOW + 0.75  # mid-second: whole seconds still compare exactly
    return app.test_client()


def body(**extra) -> bytes:
    return json.dumps({"job_id": f"hostile-{uuid.uuid4()}", "status": "running", **extra}).encode()


def signed(raw: bytes, ts=NOW, **extra) -> dict:
    return hmac_headers(SECRET, raw, timestamp=ts, **extra)


def with_signature(signature: str, ts=NOW) -> dict:
    return {"Content-Type": "application/json", "X-Timestamp": str(ts), "X-Signature": signature}


def std(raw: bytes, signature: str) -> dict:
    return {"Content-Type": "application/json", "webhook-id": "msg_" + uuid.uuid4().hex,
            "webhook-timestamp": str(NOW), "webhook-signature": signature}


def sig_for(raw: bytes, ts) -> str:
    return hmac_signature(SECRET, ts, raw)


B = body()
GOOD_HEX = sig_for(B, NOW).removeprefix("sha256=")
GOOD_STD = standard_headers(SECRET, "msg_fixed", B, timestamp=NOW)["webhook-signature"]

HEADER_CASES = [
    # name, headers, body, status, code
    ("signature empty", with_signature(""), B, 401, "invalid_signature"),
    ("timestamp empty", {**signed(B), "X-Timestamp": ""}, B, 401, "invalid_signature"),
    ("standard signature empty", std(B, ""), B, 401, "missing_signature"),
    ("scheme sha1=", with_signature("sha1=" + "a" * 40), B, 401, "invalid_signature"),
    ("scheme sha512=", with_signature("sha512=" + GOOD_HEX * 2), B, 401, "invalid_signature"),
    ("standard scheme v0", std(B, "v0," + GOOD_STD[3:]), B, 401, "invalid_signature"),
    ("hex one byte short", with_signature("sha256=" + GOOD_HEX[:-2]), B, 401, "invalid_signature"),
    ("hex one byte long", with_signature("sha256=" + GOOD_HEX + "00"), B, 401, "invalid_signature"),
    ("non-hex", with_signature("sha256=" + "zz" * 32), B, 401, "invalid_signature"),
    ("non-base64", std(B, "v1,!!!not-base64!!!"), B, 401, "invalid_signature"),
    ("base64 wrong length", std(B, "v1," + base64.b64encode(b"x" * 31).decode()), B, 401, "invalid_signature"),
    ("non-ASCII in signature", with_signature("sha256=" + "é" * 64), B, 401, "invalid_signature"),
    ("non-ASCII in timestamp", {**signed(B), "X-Timestamp": "١٨٠٠٠٠٠٠٠٠".encode().decode("latin-1")}, B, 401, "invalid_signature"),
    ("signature repeated", [("Content-Type", "application/json"), ("X-Timestamp", str(NOW)),
                            ("X-Signature", sig_for(B, NOW)), ("X-Signature", sig_for(B, NOW))], B, 401, "invalid_signature"),
    ("a hundred signatures", std(B, " ".join([GOOD_STD] * 100)), B, 401, "invalid_signature"),
    ("hex signature in a list", with_signature(",".join([sig_for(B, NOW)] * 3)), B, 401, "invalid_signature"),
    ("timestamp exactly -tolerance", signed(B, NOW - TOLERANCE), B, 200, None),
    ("timestamp exactly +tolerance", signed(B, NOW + TOLERANCE), B, 200, None),
    ("one second too old", signed(B, NOW - TOLERANCE - 1), B, 401, "stale_timestamp"),
    ("one second too new", signed(B, NOW + TOLERANCE + 1), B, 401, "stale_timestamp"),
    ("timestamp float", with_signature(sig_for(B, f"{NOW}.5"), ts=f"{NOW}.5"), B, 401, "invalid_signature"),
    ("timestamp NaN", with_signature(sig_for(B, "NaN"), ts="NaN"), B, 401, "invalid_signature"),
    ("timestamp 1e300", with_signature(sig_for(B, "1e300"), ts="1e300"), B, 401, "invalid_signature"),
    ("timestamp in milliseconds", with_signature(sig_for(B, NOW * 1000), ts=NOW * 1000), B, 401, "stale_timestamp"),
    ("timestamp negative", with_signature(sig_for(B, -NOW), ts=-NOW), B, 401, "invalid_signature"),
    ("timestamp with inner space", with_signature(sig_for(B, "1800 000000"), ts="1800 000000"), B, 401, "invalid_signature"),
    ("timestamp with outer spaces", with_signature(sig_for(B, NOW), ts=f"  {NOW} "), B, 200, None),
    ("timestamp 40 digits", with_signature(sig_for(B, "9" * 40), ts="9" * 40), B, 401, "invalid_signature"),
]


@pytest.mark.parametrize("name, headers, raw, status, code", HEADER_CASES, ids=[c[0] for c in HEADER_CASES])
def test_hostile_headers(hostile_client, reliability, name, headers, raw, status, code):
    reliability.hostile_input("signed requests with hostile headers (table)")
    response = hostile_client.post(HOOK, data=raw, headers=headers)
    assert response.status_code == status, response.json
    if code:
        assert response.json["error"] == code
    else:
        assert response.json["accepted"] is True


DEEP = b'{"job_id": "deep", "status": "running", "x": ' + b"[" * 10000 + b"]" * 10000 + b"}"
BODY_CASES = [
    ("invalid UTF-8", b'{"job_id": "\xff\xfe", "status": "running"}', 400, "invalid_json"),
    ("a BOM", b"\xef\xbb\xbf" + body(), 200, None),
    ("a trailing newline", body() + b"\n", 200, None),
    ("10 000 levels of nesting", DEEP, 400, "validation_error"),
    ("40 levels of nesting", body()[:-1] + b', "x": ' + b"[" * 40 + b"]" * 40 + b"}", 400, "validation_error"),
    ("a number too large for a float", body()[:-1] + b', "x": 1e999}', 400, "invalid_json"),
    ("an integer of 5000 digits", body()[:-1] + b', "x": ' + b"9" * 5000 + b"}", 400, "invalid_json"),
    ("a huge progress", body(progress=10**30), 400, "validation_error"),
    ("NaN literal", body()[:-1] + b', "progress": NaN}', 400, "invalid_json"),
    ("Infinity literal", body()[:-1] + b', "x": -Infinity}', 400, "invalid_json"),
    ("a NUL in a string", body(message="a\u0000b"), 400, "validation_error"),
    ("a JSON array", b"[]", 400, "validation_error"),
    ("a JSON string", b'"job"', 400, "validation_error"),
    ("JSON null", b"null", 400, "validation_error"),
    ("an empty body", b"", 400, "invalid_json"),
    ("a job_id of 256 characters", body(job_id="j" * 256), 400, "validation_error"),
    ("a message of 10 001 characters", body(message="m" * 10_001), 400, "validation_error"),
    ("an error of 10 001 characters", body(status="failed", error="e" * 10_001), 400, "validation_error"),
    ("a message of 10 000 characters", body(message="m" * 10_000), 200, None),
    ("a status that is a number", json.dumps({"job_id": "n", "status": 3}).encode(), 400, "validation_error"),
    ("over the limit with Content-Length", body(pad="x" * 70_000), 413, "payload_too_large"),
]


@pytest.mark.parametrize("name, raw, status, code", BODY_CASES, ids=[c[0] for c in BODY_CASES])
def test_hostile_bodies(hostile_client, reliability, name, raw, status, code):
    reliability.hostile_input("signed requests with hostile bodies (table)")
    response = hostile_client.post(HOOK, data=raw, headers=signed(raw))
    assert response.status_code == status, response.json
    if code:
        assert response.json["error"] == code
    else:
        assert response.json["accepted"] is True


def test_same_delivery_id_with_another_body_changes_nothing(hostile_client, app):
    from sqlalchemy import select

    from shared.models import Delivery

    delivery_id = "dup-" + uuid.uuid4().hex
    first, second = body(progress=10), body(progress=90)
    a = hostile_client.post(HOOK, data=first, headers=signed(first, **{"X-Delivery-Id": delivery_id}))
    b = hostile_client.post(HOOK, data=second, headers=signed(second, **{"X-Delivery-Id": delivery_id}))
    assert (a.json["duplicate"], b.json["duplicate"]) == (False, True)
    assert b.json["job_id"] == a.json["job_id"]  # the recorded delivery answers, not the new body
    with app.extensions["sessionmaker"]() as db:
        stored = db.scalars(select(Delivery.body).where(Delivery.delivery_id == delivery_id)).all()
    assert stored == [first]
