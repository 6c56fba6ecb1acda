"""Signature checks over raw bytes, with known-answer vectors."""

import base64
import hashlib
import hmac

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


def spaced(hex_digits: str) -> str:
    return " ".join(hex_digits[i:i + 2] for i in range(0, len(hex_digits), 2))


@pytest.mark.parametrize(
    "signature",
    [
        "sha256=" + spaced(KNOWN_HMAC.removeprefix("sha256=")),  # bytes.fromhex takes spaces
        "sha256=" + KNOWN_HMAC.removeprefix("sha256=")[:32] + " " + KNOWN_HMAC.removeprefix("sha256=")[32:],
        KNOWN_HMAC + "\n",
        KNOWN_HMAC + "00",
        "sha256=sha256=" + KNOWN_HMAC.removeprefix("sha256="),
        "ſha256=" + KNOWN_HMAC.removeprefix("sha256="),  # folds to "sha256=" under Unicode IGNORECASE
    ],
)
def test_hmac_signature_is_exactly_64_hex_digits(signature):
    with pytest.raises(SignatureError) as caught:
        verify((b"n8n-secret",), headers(signature=signature), BODY, NOW)
    assert caught.value.code == "invalid_signature"


@pytest.mark.parametrize("ts", [f"{NOW}\n", f"{NOW}\xa0", f"\x85{NOW}", f"+{NOW}", f"{NOW}_0"])
def test_hmac_timestamp_is_digits_only(ts):
    # Signed over the value with any whitespace trimmed: only what HTTP trims (spaces, tabs) may be.
    mac = hmac.new(b"n8n-secret", ts.strip().encode("latin-1") + b"." + BODY, hashlib.sha256).hexdigest()
    signed = {"X-Timestamp": ts, "X-Signature": mac}
    with pytest.raises(SignatureError) as caught:
        verify((b"n8n-secret",), signed, BODY, NOW)
    assert caught.value.code == "invalid_signature"


def test_hmac_spaces_around_the_values_are_trimmed_as_http_does():
    padded = {"X-Timestamp": f" {NOW}\t", "X-Signature": f"\t{KNOWN_HMAC} "}
    assert verify((b"n8n-secret",), padded, BODY, NOW).scheme == "hmac"


def test_hmac_reports_the_verified_signature_the_same_however_spelled():
    bare = KNOWN_HMAC.removeprefix("sha256=")
    spellings = [KNOWN_HMAC, bare, bare.upper(), "SHA256=" + bare, "sha256=" + bare.upper()]
    reported = {verify((b"n8n-secret",), headers(signature=s), BODY, NOW).signature for s in spellings}
    assert reported == {bare}
    # Any secret of a rotation: the signature is what the sender sent, not which secret matched.
    assert verify((b"new-secret", b"n8n-secret"), headers(), BODY, NOW).signature == bare


def test_only_hmac_reports_a_signature():
    secret = b"std-secret"
    good = standard_webhooks_signature(secret, "msg_1", NOW, BODY)
    standard = {"webhook-id": "msg_1", "webhook-timestamp": str(NOW), "webhook-signature": good}
    assert verify((secret,), standard, BODY, NOW).signature is None
    plain = verify((secret,), {"X-Webhook-Secret": "std-secret"}, BODY, NOW, allow_secret_header=True)
    assert plain.signature is None


STD_SECRET = base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
STD_ID, STD_TS, STD_BODY = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
STD_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def standard(signature=STD_SIGNATURE, webhook_id=STD_ID, ts=str(STD_TS)):
    return {"webhook-id": webhook_id, "webhook-timestamp": ts, "webhook-signature": signature}


def test_standard_webhooks_known_answer_verifies():
    verified = verify((STD_SECRET,), standard(), STD_BODY, STD_TS)
    assert (verified.scheme, verified.webhook_id) == ("standard-webhooks", STD_ID)


@pytest.mark.parametrize(
    "hdrs",
    [
        # The same 32 bytes, spelled with the two unused bits of the last character set.
        standard(signature=STD_SIGNATURE[:-2] + "F="),
        standard(signature=STD_SIGNATURE[:-1]),  # padding missing
        standard(signature=STD_SIGNATURE + "\n"),
        standard(signature=STD_SIGNATURE.replace(",", ", ")),
        standard(signature="v1," + STD_SIGNATURE[3:].replace("+", "-").replace("/", "_")),  # URL-safe alphabet
        standard(signature=STD_SIGNATURE.replace("v1", "V1")),
        standard(signature=f"v1,AAAA\xa0{STD_SIGNATURE}"),  # separated by a non-breaking space
        standard(ts=f"{STD_TS}\n"),
    ],
)
def test_standard_webhooks_signature_spelled_one_way(hdrs):
    with pytest.raises(SignatureError) as caught:
        verify((STD_SECRET,), hdrs, STD_BODY, STD_TS)
    assert caught.value.code == "invalid_signature"


def test_standard_webhooks_blank_id_is_missing():
    hdrs = standard(webhook_id=" ")
    with pytest.raises(SignatureError) as caught:
        verify((STD_SECRET,), hdrs, STD_BODY, STD_TS)
    assert caught.value.code == "missing_signature"
