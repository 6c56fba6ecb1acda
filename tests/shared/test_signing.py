"""Signature checks over raw bytes, with known-answer vectors."""

import base64

import pytest

from shared.signing import SignatureError, hmac_signature, standard_webhooks_signature, verify

NOW = 1_700_000_000
BODY = b'{"job_id":"j1","status":"running","progress":40}'
# openssl: printf '%s' '1700000000.<BODY>' | openssl dgst -sha256 -hmac n8n-secret
KNOWN_HMAC = "sha256=d0d1d0b718ea55404729de721c7f48507528ea536912d77748b3abd23ddb7e20"


def headers(ts=NOW, signature=KNOWN_HMAC):
    return {"X-Timestamp": str(ts), "X-Signature": signature}


def test_hmac_known_answer():
    assert hmac_signature(b"n8n-secret", NOW, BODY) == KNOWN_HMAC


def test_standard_webhooks_known_answer():
    secret = base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    signature = standard_webhooks_signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_hmac_valid_with_and_without_prefix():
    assert verify((b"n8n-secret",), headers(), BODY, NOW).scheme == "hmac"
    bare = KNOWN_HMAC.removeprefix("sha256=")
    assert verify((b"n8n-secret",), headers(signature=bare), BODY, NOW).scheme == "hmac"


def test_rotation_any_secret_verifies():
    assert verify((b"new-secret", b"n8n-secret"), headers(), BODY, NOW).scheme == "hmac"


@pytest.mark.parametrize(
    "hdrs, body, code",
    [
        ({}, BODY, "missing_signature"),
        ({"X-Signature": KNOWN_HMAC}, BODY, "missing_signature"),
        (headers(), BODY + b" ", "invalid_signature"),
        (headers(ts=NOW + 1), BODY, "invalid_signature"),  # timestamp swapped after signing
        (headers(signature="sha256=" + "0" * 64), BODY, "invalid_signature"),
        (headers(signature="sha256=zz"), BODY, "invalid_signature"),
        (headers(signature="sha256=" + "é" * 64), BODY, "invalid_signature"),
        (headers(ts="1700000000.5"), BODY, "invalid_signature"),
    ],
)
def test_hmac_rejections(hdrs, body, code):
    with pytest.raises(SignatureError) as caught:
        verify((b"n8n-secret",), hdrs, body, NOW)
    assert caught.value.code == code


def test_stale_timestamp_in_both_directions():
    for ts in (NOW - 301, NOW + 301):
        signed = headers(ts=ts, signature=hmac_signature(b"n8n-secret", ts, BODY))
        with pytest.raises(SignatureError) as caught:
            verify((b"n8n-secret",), signed, BODY, NOW, tolerance=300)
        assert caught.value.code == "stale_timestamp"
    edge = NOW - 300
    assert verify((b"n8n-secret",), headers(ts=edge, signature=hmac_signature(b"n8n-secret", edge, BODY)), BODY, NOW)


def test_standard_webhooks_any_of_several_signatures():
    secret = b"std-secret"
    good = standard_webhooks_signature(secret, "msg_1", NOW, BODY)
    hdrs = {"webhook-id": "msg_1", "webhook-timestamp": str(NOW), "webhook-signature": f"v1,AAAA {good} v2,xyz"}
    verified = verify((secret,), hdrs, BODY, NOW)
    assert (verified.scheme, verified.webhook_id) == ("standard-webhooks", "msg_1")


@pytest.mark.parametrize(
    "signature, code",
    [("v1,AAAA", "invalid_signature"), ("garbage", "invalid_signature"), ("", "missing_signature")],
)
def test_standard_webhooks_rejections(signature, code):
    hdrs = {"webhook-id": "msg_1", "webhook-timestamp": str(NOW), "webhook-signature": signature}
    with pytest.raises(SignatureError) as caught:
        verify((b"std-secret",), hdrs, BODY, NOW)
    assert caught.value.code == code


def test_secret_header_only_where_allowed():
    hdrs = {"X-Webhook-Secret": "backend-secret"}
    assert verify((b"backend-secret",), hdrs, BODY, NOW, allow_secret_header=True).scheme == "secret-header"
    with pytest.raises(SignatureError) as caught:
        verify((b"backend-secret",), hdrs, BODY, NOW, allow_secret_header=False)
    assert caught.value.code == "invalid_signature"
    with pytest.raises(SignatureError) as caught:
        verify((b"backend-secret",), {"X-Webhook-Secret": "wrong"}, BODY, NOW, allow_secret_header=True)
    assert caught.value.code == "invalid_signature"
