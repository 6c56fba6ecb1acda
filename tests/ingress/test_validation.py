"""What the API and the webhooks accept fits where it is stored; ids in paths are ours or 404.

Python's `$` matches before a trailing newline, and str.isdigit() takes "²" and "٤٢": each
case below was accepted (or answered 500) by checks written with them.
"""

import json

import pytest
from sqlalchemy import select

from helpers import bearer, hmac_headers
from helpers.env import N8N_SECRET, WEBHOOK_SECRET
from shared import deliveries
from shared.models import Delivery, Job

LONGEST_JOB_TYPE = "a" + "b" * 63  # the contract's ^[a-z][a-z0-9_.-]{0,63}$ at its longest


def post_hook(client, path, payload, secret=N8N_SECRET):
    body = json.dumps(payload).encode()
    return client.post(path, data=body, headers=hmac_headers(secret, body))


# --- values with a trailing newline ------------------------------------------------------------


@pytest.mark.parametrize("job_type", ["abc\n", LONGEST_JOB_TYPE + "\n"], ids=["short", "longest"])
def test_post_jobs_refuses_a_job_type_with_a_trailing_newline(client, users, job_type):
    _, token = users("newline")
    response = client.post("/api/jobs", json={"job_type": job_type}, headers=bearer(token))
    assert (response.status_code, response.json["error"]) == (400, "validation_error"), response.json
    assert "job_type" in response.json["details"]
    assert client.get("/api/jobs", headers=bearer(token)).json["items"] == []


def test_the_job_type_filter_refuses_a_trailing_newline(client, users):
    _, token = users("filter")
    response = client.get("/api/jobs?job_type=abc%0A", headers=bearer(token))
    assert (response.status_code, response.json["error"]) == (400, "validation_error")


def test_a_callback_whose_job_type_cannot_be_stored_is_refused_not_accepted_then_lost(client):
    """The repro: answered 200, then the worker failed on varchar(64) until it gave up."""
    job_id = "newline-job-type"
    answer = post_hook(client, "/api/n8n/hooks/job-status",
                       {"job_id": job_id, "status": "running", "job_type": LONGEST_JOB_TYPE + "\n"})
    assert (answer.status_code, answer.json["error"]) == (400, "validation_error"), answer.json
    assert "job_type" in answer.json["details"]


def test_the_longest_accepted_job_type_is_stored_whole(app, client, users):
    _, token = users("longest")
    created = client.post("/api/jobs", json={"job_type": LONGEST_JOB_TYPE}, headers=bearer(token))
    assert created.status_code == 202 and created.json["job_type"] == LONGEST_JOB_TYPE

    answer = post_hook(client, "/api/n8n/hooks/job-status",
                       {"job_id": "longest-job-type", "status": "running", "job_type": LONGEST_JOB_TYPE})
    assert answer.status_code == 200, answer.json
    sessionmaker = app.extensions["sessionmaker"]
    with sessionmaker.begin() as db:
        pk = db.scalar(select(Delivery.id).where(Delivery.delivery_id == answer.json["delivery_id"]))
        deliveries.apply(db, [pk], max_attempts=5)
    with sessionmaker() as db:
        assert db.scalar(select(Job.job_type).where(Job.id == "longest-job-type")) == LONGEST_JOB_TYPE


@pytest.mark.parametrize("dimensions", ["١٠٢٤x٧٦٨", "１０２４x７６８", "1024x768\nx"])
def test_image_dimensions_are_ascii_digits(client, dimensions):
    image = {"url": "https://img/1.png", "dimensions": dimensions}
    answer = post_hook(client, "/api/webhooks/image-completion",
                       {"job_id": "dims", "status": "completed", "data": {"images": [image]}}, WEBHOOK_SECRET)
    assert (answer.status_code, answer.json["error"]) == (400, "validation_error"), answer.json


def test_image_dimensions_keep_their_spaces_and_are_read():
    from shared.artifacts import parse_dimensions

    assert parse_dimensions(" 1024 x 768\n") == (1024, 768)
    assert parse_dimensions("١٠٢٤x٧٦٨") == (None, None)


# --- ids in paths ------------------------------------------------------------------------------


@pytest.fixture
def notification(app, users):
    """A user, its token and the id of one of its unread notifications."""
    from shared.jobs import create_job
    from shared.models import User
    from shared.notifications import notify

    external_id, token = users("reader")
    with app.extensions["sessionmaker"].begin() as db:
        user = db.scalar(select(User).where(User.external_id == external_id))
        job, _ = create_job(db, user, "cover_letter", {})
        notify(db, job, "job_succeeded", "Job succeeded", "done")
    page = app.test_client().get("/api/notifications", headers=bearer(token)).json
    return token, page["items"][0]["id"]


def _unicode_digits(ascii_id: str, zero: str) -> str:
    return "".join(chr(ord(zero) + int(d)) for d in ascii_id)


def test_notification_ids_are_ascii_digits(client, notification):
    token, pk = notification
    for other in (
        "%C2%B2",  # "²": str.isdigit() says yes, int() raises
        _unicode_digits(pk, "\u0660"),  # Arabic-Indic digits of the id: int() reads them as the id
        _unicode_digits(pk, "\uff10"),  # full-width digits
        "1" * 19,  # beyond BIGINT
        "%ED%A0%80", "%FF", "-1", "+1", " 1", "1.0",
    ):
        response = client.post(f"/api/notifications/{other}/read", headers=bearer(token))
        assert (response.status_code, response.json["error"]) == (404, "not_found"), other
    unread = client.get("/api/notifications?unread=true", headers=bearer(token)).json["items"]
    assert [n["id"] for n in unread] == [pk]
    read = client.post(f"/api/notifications/{pk}/read", headers=bearer(token))
    assert read.status_code == 200 and read.json["read_at"] is not None


JOB_PATH_IDS = ["٤٢", "４２", "x" * 256, "x" * 5000, "%ED%A0%80", "%FF", "%F0%9F%98%80", "%0A", "a%0A"]


@pytest.mark.parametrize("job_id", JOB_PATH_IDS)
def test_job_ids_in_paths_are_404_whatever_they_hold(client, users, job_id):
    _, admin = users("path-admin", admin=True)
    for method, suffix, kwargs in (("get", "", {}), ("patch", "", {"json": {"user_id": None}}),
                                   ("post", "/retry", {}), ("post", "/cancel", {})):
        response = getattr(client, method)(f"/api/jobs/{job_id}{suffix}", headers=bearer(admin), **kwargs)
        assert (response.status_code, response.json["error"]) == (404, "not_found"), (method, suffix)
