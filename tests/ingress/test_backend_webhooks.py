"""The AI backends' webhooks (seeds 001 and 002): their payloads accepted as written,
with the credentials they send today, and their validation errors."""

import json
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from helpers import hmac_headers, standard_headers
from helpers.env import N8N_SECRET, WEBHOOK_SECRET
from shared.callbacks import strip_line_comments

SEEDS = Path(__file__).resolve().parents[1] / "fixtures/seeds"
IMAGE = "/api/webhooks/image-completion"
BOOK = "/api/webhooks/book-completion"
SECRET_HEADER = {"Content-Type": "application/json", "X-Webhook-Secret": WEBHOOK_SECRET}


def seed(name: str) -> bytes:
    return (SEEDS / name).read_bytes()


@pytest.mark.parametrize(
    "path, name",
    [(IMAGE, "image-completed.json"), (IMAGE, "image-failed.json"), (IMAGE, "image-progress.json"),
     (BOOK, "book-completed.json")],
)
def test_seed_payloads_accepted_as_written(client, path, name):
    body = seed(name)
    response = client.post(path, data=body, headers=SECRET_HEADER)
    assert response.status_code == 200, response.json
    assert response.json["accepted"] is True
    assert response.json["job_id"] == json.loads(strip_line_comments(body.decode()))["job_id"]


@pytest.mark.parametrize("path", [IMAGE, BOOK])
def test_signed_schemes_work_on_backend_endpoints(client, path):
    body = json.dumps({"job_id": f"sig-{uuid.uuid4()}", "status": "generating", "progress": 10}).encode()
    assert client.post(path, data=body, headers=hmac_headers(WEBHOOK_SECRET, body)).status_code == 200
    std = standard_headers(WEBHOOK_SECRET.encode(), "msg_" + uuid.uuid4().hex, body)
    assert client.post(path, data=body, headers=std).status_code == 200


@pytest.mark.parametrize("path", [IMAGE, BOOK])
def test_wrong_credentials(client, path):
    body = json.dumps({"job_id": "x", "status": "generating"}).encode()
    cases = [
        ({"Content-Type": "application/json"}, "missing_signature"),
        ({**SECRET_HEADER, "X-Webhook-Secret": "sorami-webhook-secret-key-2025"}, "invalid_signature"),
        (hmac_headers(N8N_SECRET, body), "invalid_signature"),  # the other endpoint's secret
    ]
    for headers, code in cases:
        response = client.post(path, data=body, headers=headers)
        assert (response.status_code, response.json["error"]) == (401, code)


def test_secret_header_can_be_turned_off(settings):
    from ingress import create_app

    app = create_app(replace(settings, webhook_allow_secret_header=False))
    response = app.test_client().post(IMAGE, data=seed("image-progress.json"), headers=SECRET_HEADER)
    assert (response.status_code, response.json["error"]) == (401, "invalid_signature")


def test_no_backend_secret_is_503(settings):
    from ingress import create_app

    app = create_app(replace(settings, webhook_secrets=()))
    response = app.test_client().post(BOOK, data=seed("book-completed.json"), headers=SECRET_HEADER)
    assert (response.status_code, response.json["error"]) == (503, "not_configured")


@pytest.mark.parametrize(
    "path, payload, field",
    [
        (IMAGE, {"job_id": "v1", "status": "completed"}, "data"),
        (IMAGE, {"job_id": "v1", "status": "completed", "data": {"images": []}}, "data"),
        (IMAGE, {"job_id": "v1", "status": "completed", "data": {"images": [{"dimensions": "big"}]}}, "data"),
        (IMAGE, {"job_id": "v1", "status": "completed", "data": {"images": [{"size_bytes": "2MB"}]}}, "data"),
        (IMAGE, {"job_id": "v1", "status": "exploded"}, "status"),
        (IMAGE, {"status": "generating"}, "job_id"),
        (BOOK, {"job_id": "v2", "status": "completed"}, "book_data"),
        (BOOK, {"job_id": "v2", "status": "completed", "book_data": {"book_title": "T"}}, "book_data"),
        (BOOK, {"job_id": "v2", "status": "completed", "book_data": {"chapters": [{"title": "c"}]}}, "book_data"),
        (BOOK, {"job_id": "v2", "status": "completed", "book_data": {"book_title": "T", "chapters": "all"}}, "book_data"),
    ],
)
def test_validation_errors(client, path, payload, field):
    response = client.post(path, data=json.dumps(payload).encode(), headers=SECRET_HEADER)
    assert (response.status_code, response.json["error"]) == (400, "validation_error")
    assert field in response.json["details"]


def test_comments_are_tolerated_only_on_backend_endpoints(client):
    body = b'{"job_id": "c-1", "status": "generating" // annotated\n}'
    assert client.post(IMAGE, data=body, headers=SECRET_HEADER).status_code == 200
    hook = client.post("/api/n8n/hooks/job-status", data=body, headers=hmac_headers(N8N_SECRET, body))
    assert (hook.status_code, hook.json["error"]) == (400, "invalid_json")
