"""A captured signed request replayed with other unsigned headers is the same delivery,
and ids are taken whole or refused (issue #14.4, #14.5), through the app on PostgreSQL."""

import time
import uuid

import pytest
from sqlalchemy import func, select

from helpers import body_of, hmac_headers, standard_headers
from helpers.env import N8N_SECRET

HOOK = "/api/n8n/hooks/job-status"


def callback():
    return body_of({"job_id": f"replay-{uuid.uuid4()}", "status": "running", "progress": 10})


def apply_all(app, job_id) -> int:
    """Apply the job's recorded deliveries as a worker does; the callback events it then has."""
    from shared import deliveries
    from shared.models import Delivery, JobEvent

    sessionmaker = app.extensions["sessionmaker"]
    with sessionmaker() as db:
        pks = db.scalars(select(Delivery.id).where(Delivery.job_id == job_id)).all()
    with sessionmaker.begin() as db:
        deliveries.apply(db, list(pks), max_attempts=5)
    with sessionmaker() as db:
        return db.scalar(select(func.count()).select_from(JobEvent).where(JobEvent.job_id == job_id))


@pytest.mark.parametrize("id_header", ["X-Delivery-Id", "Idempotency-Key"])
def test_a_signed_request_replayed_with_new_id_headers_is_applied_once(client, app, id_header):
    body = callback()
    captured = hmac_headers(N8N_SECRET, body, **{id_header: "sent-" + uuid.uuid4().hex})
    first = client.post(HOOK, data=body, headers=captured)
    assert first.status_code == 200 and first.json["duplicate"] is False
    for n in range(5):
        forged = {**captured, id_header: f"forged-{n}-{uuid.uuid4().hex}"}
        replay = client.post(HOOK, data=body, headers=forged)
        assert replay.status_code == 200
        assert (replay.json["duplicate"], replay.json["delivery_id"]) == (True, first.json["delivery_id"])
    # Without any id header, and with the signature spelled otherwise: the same request.
    bare = {key: value for key, value in captured.items() if key != id_header}
    upper = {**bare, "X-Signature": captured["X-Signature"].removeprefix("sha256=").upper()}
    for headers in (bare, upper):
        assert client.post(HOOK, data=body, headers=headers).json["duplicate"] is True
    assert apply_all(app, first.json["job_id"]) == 1


def test_standard_webhooks_replayed_with_new_id_headers_is_applied_once(client, app):
    body = callback()
    captured = standard_headers(N8N_SECRET.encode(), "msg_" + uuid.uuid4().hex, body)
    first = client.post(HOOK, data=body, headers=captured)
    assert first.status_code == 200 and first.json["delivery_id"] == captured["webhook-id"]
    for n in range(5):
        forged = {**captured, "X-Delivery-Id": f"forged-{n}", "Idempotency-Key": f"forged-{n}-{uuid.uuid4().hex}"}
        replay = client.post(HOOK, data=body, headers=forged)
        assert (replay.json["duplicate"], replay.json["delivery_id"]) == (True, captured["webhook-id"])
    assert apply_all(app, first.json["job_id"]) == 1


def test_the_senders_own_retry_signed_again_is_a_duplicate(client, app):
    body, delivery_id = callback(), "retry-" + uuid.uuid4().hex
    now = int(time.time())
    first, retry = (
        client.post(HOOK, data=body, headers=hmac_headers(N8N_SECRET, body, ts, **{"X-Delivery-Id": delivery_id}))
        for ts in (now - 5, now)
    )
    assert (first.json["duplicate"], retry.json["duplicate"]) == (False, True)
    assert apply_all(app, first.json["job_id"]) == 1


def test_a_capture_of_the_senders_retry_replayed_with_other_id_headers_is_applied_once(client, app):
    """The retry is signed again (a new timestamp, so a new signature) under the same id: a
    duplicate by that id. Whoever captures the retry and replays it within the tolerance
    under another id, or none, replays the same delivery."""
    body, delivery_id = callback(), "retry-" + uuid.uuid4().hex
    now = int(time.time())
    signed_at = {ts: hmac_headers(N8N_SECRET, body, ts, **{"X-Delivery-Id": delivery_id}) for ts in (now - 5, now)}
    original, retry = (client.post(HOOK, data=body, headers=headers) for headers in signed_at.values())
    captured = signed_at[now]
    assert (original.json["duplicate"], retry.json["duplicate"]) == (False, True)
    bare = {key: value for key, value in captured.items() if key != "X-Delivery-Id"}
    for headers in (
        {**bare, "X-Delivery-Id": "forged-" + uuid.uuid4().hex},
        {**bare, "Idempotency-Key": "forged-" + uuid.uuid4().hex},
        bare,
    ):
        replay = client.post(HOOK, data=body, headers=headers)
        assert replay.status_code == 200
        assert (replay.json["duplicate"], replay.json["delivery_id"]) == (True, delivery_id), headers
    assert apply_all(app, original.json["job_id"]) == 1


@pytest.mark.parametrize("name", ["X-Delivery-Id", "Idempotency-Key"])
def test_an_id_header_longer_than_255_characters_is_refused_never_cut(client, app, name):
    body = callback()
    common = "d" * 255
    for last in "12":
        response = client.post(HOOK, data=body, headers=hmac_headers(N8N_SECRET, body, **{name: common + last}))
        assert (response.status_code, response.json["error"]) == (400, "validation_error")
        assert name in response.json["details"], response.json
    whole = "w" * 254 + uuid.uuid4().hex[:1]
    accepted = client.post(HOOK, data=body, headers=hmac_headers(N8N_SECRET, body, **{name: whole}))
    assert (accepted.status_code, accepted.json["delivery_id"]) == (200, whole)


def test_a_webhook_id_longer_than_255_characters_is_refused(client):
    body = callback()
    response = client.post(HOOK, data=body, headers=standard_headers(N8N_SECRET.encode(), "m" * 256, body))
    assert (response.status_code, response.json["error"]) == (400, "validation_error")
    assert "webhook-id" in response.json["details"]
