"""POST /api/n8n/hooks/job-status: every rejection of CONTRACT §4, and duplicates."""

import time
import uuid

import pytest
from sqlalchemy import func, select

from helpers.env import N8N_OLD_SECRET, N8N_SECRET, WEBHOOK_SECRET
from helpers import body_of, hmac_headers, standard_headers

HOOK = "/api/n8n/hooks/job-status"


def payload(**extra):
    return {"job_id": f"hook-{uuid.uuid4()}", "status": "running", "progress": 10, **extra}


def post(client, body: bytes, headers: dict):
    return client.post(HOOK, data=body, headers=headers)


def deliveries_for(app, job_id):
    from shared.models import Delivery

    with app.extensions["sessionmaker"]() as db:
        return db.scalar(select(func.count()).select_from(Delivery).where(Delivery.job_id == job_id))


def test_signed_callback_is_recorded(client, app):
    body = body_of(payload())
    response = post(client, body, hmac_headers(N8N_SECRET, body))
    assert response.status_code == 200
    answer = response.json
    assert answer["accepted"] is True and answer["duplicate"] is False
    assert answer["delivery_id"].startswith("sha256:")
    assert deliveries_for(app, answer["job_id"]) == 1


def test_rotated_secret_still_verifies(client):
    body = body_of(payload())
    assert post(client, body, hmac_headers(N8N_OLD_SECRET, body)).status_code == 200


def test_replay_is_a_duplicate_and_changes_nothing(client, app):
    body = body_of(payload())
    now = int(time.time())
    first = post(client, body, hmac_headers(N8N_SECRET, body, now, **{"X-Delivery-Id": "d-1-" + uuid.uuid4().hex}))
    # The sender's own retry: signed again (another second), the same X-Delivery-Id.
    headers = hmac_headers(N8N_SECRET, body, now - 1, **{"X-Delivery-Id": first.json["delivery_id"]})
    replay = post(client, body, headers)
    assert replay.status_code == 200 and replay.json["duplicate"] is True
    assert replay.json["delivery_id"] == first.json["delivery_id"]
    assert deliveries_for(app, first.json["job_id"]) == 1
    # Without any id header the body's hash identifies the delivery.
    plain = post(client, body, hmac_headers(N8N_SECRET, body, now - 2))
    again = post(client, body, hmac_headers(N8N_SECRET, body, now - 3))
    assert (plain.json["duplicate"], again.json["duplicate"]) == (False, True)
    assert deliveries_for(app, first.json["job_id"]) == 2


def test_rejections(client):
    body = body_of(payload())
    now = int(time.time())
    swapped = hmac_headers(N8N_SECRET, body, timestamp=now)
    swapped["X-Timestamp"] = str(now + 1)
    cases = {
        "missing": ({"Content-Type": "application/json"}, 401, "missing_signature"),
        "invalid": (hmac_headers("not-the-secret", body), 401, "invalid_signature"),
        "stale": (hmac_headers(N8N_SECRET, body, timestamp=now - 3600), 401, "stale_timestamp"),
        "future": (hmac_headers(N8N_SECRET, body, timestamp=now + 3600), 401, "stale_timestamp"),
        "swapped timestamp": (swapped, 401, "invalid_signature"),
        "the other endpoint's secret": (hmac_headers(WEBHOOK_SECRET, body), 401, "invalid_signature"),
        "secret header on an n8n hook": (
            {"Content-Type": "application/json", "X-Webhook-Secret": N8N_SECRET}, 401, "invalid_signature"),
    }
    for name, (headers, status, code) in cases.items():
        response = post(client, body, headers)
        assert (response.status_code, response.json["error"]) == (status, code), name
        assert response.json["message"]


def test_standard_webhooks_valid_and_invalid(client):
    body = body_of(payload())
    webhook_id = "msg_" + uuid.uuid4().hex
    ok = post(client, body, standard_headers(N8N_SECRET.encode(), webhook_id, body))
    assert ok.status_code == 200 and ok.json["delivery_id"] == webhook_id
    dup = post(client, body, standard_headers(N8N_SECRET.encode(), webhook_id, body))
    assert dup.json["duplicate"] is True
    bad = standard_headers(b"wrong", "msg_" + uuid.uuid4().hex, body)
    response = post(client, body, bad)
    assert (response.status_code, response.json["error"]) == (401, "invalid_signature")
    stale = standard_headers(N8N_SECRET.encode(), "msg_x", body, timestamp=int(time.time()) - 3600)
    assert post(client, body, stale).json["error"] == "stale_timestamp"


@pytest.mark.parametrize(
    "body, code",
    [
        (b"{not json", "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        (b"[1, 2]", "validation_error"),
        (body_of({"status": "running"}), "validation_error"),
        (body_of({"job_id": "x", "status": "exploded"}), "validation_error"),
        (body_of({"job_id": "x", "status": "running", "progress": 140}), "validation_error"),
        (body_of({"job_id": "x", "status": "running", "progress": True}), "validation_error"),
        (body_of({"job_id": "", "status": "running"}), "validation_error"),
        (body_of({"job_id": "x", "status": "failed", "error": 12}), "validation_error"),
    ],
)
def test_bad_payloads_after_a_valid_signature(client, body, code):
    response = post(client, body, hmac_headers(N8N_SECRET, body))
    assert (response.status_code, response.json["error"]) == (400, code)


def test_unknown_keys_are_kept(client, app):
    from shared.models import Delivery

    body = body_of(payload(workflow="wf-7", custom={"a": 1}))
    response = post(client, body, hmac_headers(N8N_SECRET, body))
    assert response.status_code == 200
    with app.extensions["sessionmaker"]() as db:
        stored = db.scalar(select(Delivery.body).where(Delivery.job_id == response.json["job_id"]))
    assert stored == body  # the raw bytes, as signed


def test_body_limit(client):
    body = body_of(payload(padding="x" * 70000))
    response = post(client, body, hmac_headers(N8N_SECRET, body))
    assert (response.status_code, response.json["error"]) == (413, "payload_too_large")


def test_not_configured_answers_503(settings):
    from dataclasses import replace

    from ingress import create_app

    app = create_app(replace(settings, n8n_webhook_secrets=()))
    body = body_of(payload())
    response = app.test_client().post(HOOK, data=body, headers=hmac_headers(N8N_SECRET, body))
    assert (response.status_code, response.json["error"]) == (503, "not_configured")
    assert response.headers["Retry-After"]
