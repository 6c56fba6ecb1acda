"""/openapi.json says exactly what the server accepts (issue #14.9): each value below is
valid in the document if and only if the server takes it."""

import uuid

import jsonschema_rs
import pytest

from helpers import bearer, body_of, hmac_headers
from helpers.env import N8N_SECRET
from ingress.openapi import spec

DOCUMENT = spec()


def parameter(path: str, method: str, name: str) -> dict:
    return next(p["schema"] for p in DOCUMENT["paths"][path][method]["parameters"] if p["name"] == name)


def body(path: str, method: str) -> dict:
    return DOCUMENT["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]


def valid(schema: dict, instance) -> bool:
    root = {**schema, "components": DOCUMENT["components"]}
    return jsonschema_rs.Draft202012Validator(root).is_valid(instance)


@pytest.fixture
def admin(users):
    return bearer(users("spec-admin", admin=True)[1])


def post_job(client, admin, key):
    return client.post("/api/jobs", json={"job_type": "spec"}, headers={**admin, "Idempotency-Key": key})


def list_jobs(client, admin, cursor):
    return client.get("/api/jobs", query_string={"cursor": cursor}, headers=admin)


def assign(client, admin, payload):
    job = client.post("/api/jobs", json={"job_type": "spec"}, headers=admin).json["id"]
    return client.patch(f"/api/jobs/{job}", json=payload, headers=admin)


def callback(client, admin, payload):
    raw = body_of({**payload, "nonce": uuid.uuid4().hex})  # a delivery of its own each time
    return client.post("/api/n8n/hooks/job-status", data=raw, headers=hmac_headers(N8N_SECRET, raw))


def action(client, admin, payload):
    return client.post("/api/actions", json=payload, headers=admin)


def delivery_id(client, admin, value):
    raw = body_of({"job_id": f"spec-{uuid.uuid4()}", "status": "running"})
    headers = hmac_headers(N8N_SECRET, raw, **{"X-Delivery-Id": value})
    return client.post("/api/n8n/hooks/job-status", data=raw, headers=headers)


CASES = [
    # (where in the document, the value, how the server gets it, what the server gets besides)
    (lambda: parameter("/api/jobs", "post", "Idempotency-Key"), post_job, ["", "  ", "\t"], ["k", " k ", "k" * 255]),
    (lambda: parameter("/api/jobs", "get", "cursor"), list_jobs,
     ["abc", "WyIyMDI2In0", "1.ABC", "1.abc"], ["", "0.", "1761000000000000.61", "1.00"]),
    (lambda: body("/api/jobs/{job_id}", "patch"), assign,
     [{"user_id": False}, {"user_id": ""}, {"user_id": " "}, {"user_id": "x" * 256}, {"user_id": []}],
     [{"user_id": None}, {"user_id": "x"}, {"user_id": 42}, {"user_id": " x "}]),
    (lambda: body("/api/n8n/hooks/job-status", "post"), callback,
     [{"job_id": "s", "status": ""}, {"job_id": "s", "status": "runnin"}, {"job_id": " ", "status": "running"},
      {"job_id": "s", "status": "running", "progress": True}, {"job_id": "s", "status": "failed", "error": 1},
      {"job_id": "s", "status": "running", "user_id": False}],
     [{"job_id": "s", "status": "Running "}, {"job_id": " s", "status": "DONE"},
      {"job_id": "s", "status": "failed", "error": {"code": 1}}, {"job_id": "s", "status": "queued"}]),
    (lambda: body("/api/actions", "post"), action,
     [{"actionType": "GENERER_X", "entiteId": "1"}, {"actionType": "GENERER_X", "entiteType": "candidat"},
      {"commentaire": "no type"}, {"actionType": "GENERER_X", "entiteType": "autre", "entiteId": 1},
      {"typeAction": "GENERER_X", "entiteId": True}],
     [{"actionType": "GENERER_X", "entiteType": "candidat", "entiteId": 1}, {"typeAction": "RELANCE_PROSPECT_X"},
      {"actionType": None, "typeAction": "VALIDER_X", "entiteType": None}]),
    (lambda: parameter("/api/n8n/hooks/job-status", "post", "X-Delivery-Id"), delivery_id,
     ["d" * 256, " " + "d" * 256], ["", "d" * 255, "\td\t"]),
]


# The answer to each accepted value, in order, where it is not 200: a job is created (202), and
# " k " is the key "k" trimmed, so its request replays the first one (200); each action makes a job.
ANSWERS = {"post_job": [202, 200, 202], "action": [202, 202, 202]}


@pytest.mark.parametrize("where, send, refused, accepted", CASES, ids=[c[1].__name__ for c in CASES])
def test_the_document_and_the_server_agree(client, admin, where, send, refused, accepted):
    schema = where()
    for value in refused:
        assert not valid(schema, value), f"the document allows {value!r}"
        response = send(client, admin, value)
        assert (response.status_code, response.json["error"]) == (400, "validation_error"), (value, response.json)
    for value, answer in zip(accepted, ANSWERS.get(send.__name__, [200] * len(accepted)), strict=True):
        assert valid(schema, value), f"the document refuses {value!r}"
        response = send(client, admin, value)
        assert response.status_code == answer, (value, response.json)
