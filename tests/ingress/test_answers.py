"""Every endpoint's real answers hold to /openapi.json (issue #15).

For each operation the document describes, every status it documents is reached through the
app with real data (jobs created, cancelled, retried and assigned; callbacks recorded and
applied, so that jobs have events, artifacts and notifications), and each answer is held to
the document: its status is documented, its content type is the documented one, its body
validates against that response's schema, and its documented headers are there with values
of their schema. The refusals every operation can meet come from apps built for them: NUL in
the URL (400), no credentials (401), a rate limit of one request (429), a database that
refuses connections (503 unavailable), no secrets (503 not_configured).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field, replace

import jsonschema_rs
import pytest
from sqlalchemy import select

from helpers import bearer, body_of, hmac_headers
from helpers.env import N8N_SECRET, WEBHOOK_SECRET
from ingress.openapi import spec
from shared.ratelimit import Limit

DOCUMENT = spec()
OPERATIONS = sorted(
    f"{method.upper()} {path}" for path, item in DOCUMENT["paths"].items() for method in item if method != "parameters"
)
JSON = {"Content-Type": "application/json"}
TEXT = {"Content-Type": "text/plain"}
BIG = b'{"pad": "' + b"x" * 70_000 + b'"}'  # over the tests' MAX_BODY_BYTES
HOOK = "/api/n8n/hooks/job-status"
IMAGES = "/api/webhooks/image-completion"
BOOKS = "/api/webhooks/book-completion"
SECRETS = {HOOK: N8N_SECRET, IMAGES: WEBHOOK_SECRET, BOOKS: WEBHOOK_SECRET}


def drift(operation: str, response) -> list[str]:
    """What `response` to `operation` says that the document does not; empty when they agree."""
    method, path = operation.split(" ", 1)
    described = DOCUMENT["paths"][path][method.lower()]["responses"].get(str(response.status_code))
    if described is None:
        return [f"status {response.status_code} is not documented"]
    problems = []
    content = described.get("content")
    if content is None:
        if response.get_data():
            problems.append("a body where the document describes none")
    elif response.mimetype not in content:
        problems.append(f"Content-Type {response.content_type}, documented: {', '.join(content)}")
    elif response.mimetype == "application/json":
        schema = {**content["application/json"]["schema"], "components": DOCUMENT["components"]}
        validator = jsonschema_rs.Draft202012Validator(schema)
        problems += [f"body at /{'/'.join(map(str, e.instance_path))}: {e.message}"
                     for e in validator.iter_errors(response.get_json())]
    for name, header in described.get("headers", {}).items():
        value = response.headers.get(name)
        if value is None:
            if header.get("required"):
                problems.append(f"no {name} header")
        elif header["schema"]["type"] == "integer" and not re.fullmatch(r"[0-9]+", value):
            problems.append(f"{name}: {value!r} is not an integer")
    return problems


# --- the apps, and the data the answers show -----------------------------------------------------


def token(app, external_id: str, admin: bool = False) -> dict:
    from shared.accounts import create_token

    with app.extensions["sessionmaker"].begin() as db:
        return bearer(create_token(db, external_id, admin=admin))


def unique(name: str) -> str:
    return f"answers-{name}-{uuid.uuid4().hex[:8]}"


def signed(path: str):
    return lambda raw: hmac_headers(SECRETS[path], raw)


def unsigned(raw: bytes) -> dict:
    return JSON


@dataclass
class World:
    client: object
    limited: object  # every token and sender may send one request an hour
    broken: object  # its database refuses connections
    unconfigured: object  # no sender's secret is set
    steady: object  # its sweeps are hours apart
    app: object
    admin: dict
    user: dict
    owner: str  # the user's application id
    image_job: str = field(default_factory=lambda: unique("image"))  # succeeded: images, events, a notification
    book_job: str = field(default_factory=lambda: unique("book"))  # succeeded, with a book
    pending_job: str = ""
    notification: str = ""  # the user's, about image_job

    def fresh(self, admin: bool = False) -> dict:
        """A token of its own: the limited app's one request is this token's."""
        return token(self.app, unique("limited"), admin=admin)

    def deliver(self, path: str, payload: dict):
        """A callback recorded through the app, then applied as a worker applies it."""
        from shared import deliveries
        from shared.models import Delivery

        raw = body_of(payload)
        answer = self.client.post(path, data=raw, headers=hmac_headers(SECRETS[path], raw))
        assert answer.status_code == 200, answer.get_json()
        with self.app.extensions["sessionmaker"].begin() as db:
            pk = db.scalar(select(Delivery.id).where(Delivery.delivery_id == answer.get_json()["delivery_id"]))
            deliveries.apply(db, [pk], max_attempts=5)
        return answer


@pytest.fixture(scope="module")
def world(app, settings, redis_client):
    from ingress import create_app
    from shared import sweeps

    limited = create_app(replace(settings, rate_limit_token=Limit(1, 3600), rate_limit_sender=Limit(1, 3600)))
    broken = create_app(replace(settings, database_url="postgresql+psycopg2://postgres@127.0.0.1:1/nothing"))
    unconfigured = create_app(replace(settings, n8n_webhook_secrets=(), webhook_secrets=()))
    steady = create_app(replace(settings, sweep_interval=3600.0))
    with app.extensions["sessionmaker"].begin() as db:
        for name in (sweeps.BEAT, sweeps.CANARY):  # what a running beat and worker record
            sweeps.beat(db, name)
    owner = unique("owner")
    world = World(
        client=app.test_client(), limited=limited.test_client(), broken=broken.test_client(),
        unconfigured=unconfigured.test_client(), steady=steady.test_client(), app=app,
        admin=token(app, unique("admin"), admin=True), user=token(app, owner), owner=owner,
    )
    client, user = world.client, world.user
    world.deliver(HOOK, {"job_id": world.image_job, "status": "running", "progress": 40, "user_id": owner,
                         "job_type": "image_generation", "message": "drawing"})
    world.deliver(IMAGES, {"job_id": world.image_job, "status": "completed", "user_id": owner, "data": {
        "images": [{"url": "https://img.example/1.png", "file_path": "/1.png", "description": "a cat",
                    "format": "png", "size_bytes": 2048, "dimensions": "1024x768"},
                   {"url": "https://img.example/2.png"}],
        "metadata": {"model_name": "m1", "generation_time_seconds": 2.5},
    }})
    world.deliver(BOOKS, {"job_id": world.book_job, "status": "completed", "user_id": owner, "book_data": {
        "book_title": "Le livre", "topic": "t", "goal": "g", "outline": ["i", {"ii": 2}], "word_count": 1200,
        "chapter_count": 2, "chapters": [{"title": "Un", "content": "..."}, {"title": "Deux", "content": "..."}],
    }})
    world.pending_job = client.post("/api/jobs", json={"job_type": "answers"}, headers=user).get_json()["id"]
    notifications = client.get("/api/notifications", query_string={"job_id": world.image_job}, headers=user)
    world.notification = notifications.get_json()["items"][0]["id"]
    yield world
    for made in (limited, broken, unconfigured, steady):
        made.extensions["engine"].dispose()


# --- each operation: its plain request, and the answers of its own ---------------------------------


def job_body(**extra) -> dict:
    return {"job_type": "answers", "params": {"n": 1}, **extra}


def action_body(**extra) -> dict:
    return {"actionType": "GENERER_ATTESTATION", "entiteType": "candidat", "entiteId": 7, **extra}


def hook_body() -> bytes:
    return body_of({"job_id": f"answers-{uuid.uuid4()}", "status": "running"})


# The plain request of each operation, (client, credentials, query) -> answer: what the
# refusals any operation meets are tried with. Ids are of no job: the one request that the
# limited app lets through changes nothing.
MISSING = "answers-missing"


def _get(path: str):
    return lambda c, creds, q: c.get(path + q, headers=creds)


def _post(path: str, json_body=None):
    return lambda c, creds, q: c.post(path + q, json=json_body, headers=creds)


def _hook(path: str):
    def send(c, sign, q):
        raw = hook_body()
        return c.post(path + q, data=raw, headers=sign(raw))

    return send


PLAIN = {
    "POST /api/jobs": _post("/api/jobs", job_body()),
    "GET /api/jobs": _get("/api/jobs"),
    "GET /api/jobs/{job_id}": _get(f"/api/jobs/{MISSING}"),
    "PATCH /api/jobs/{job_id}": lambda c, creds, q: c.patch(f"/api/jobs/{MISSING}{q}", json={"user_id": None},
                                                           headers=creds),
    "POST /api/jobs/{job_id}/retry": _post(f"/api/jobs/{MISSING}/retry"),
    "POST /api/jobs/{job_id}/cancel": _post(f"/api/jobs/{MISSING}/cancel"),
    "POST /api/actions": _post("/api/actions", action_body()),
    "GET /api/notifications": _get("/api/notifications"),
    "POST /api/notifications/{notification_id}/read": _post("/api/notifications/999999999999/read"),
    **{f"POST {path}": _hook(path) for path in SECRETS},
    **{f"GET {path}": _get(path) for path in ("/healthz", "/readyz", "/metrics", "/openapi.json")},
}


# --- the answers each operation gives of its own ---------------------------------------------------


def _post_jobs(w):
    key = {"Idempotency-Key": uuid.uuid4().hex}
    return [
        w.client.post("/api/jobs", json=job_body(), headers={**w.user, **key}),
        w.client.post("/api/jobs", json=job_body(), headers={**w.user, **key}),  # the same job: 200
        w.client.post("/api/jobs", json=job_body(params={"n": 2}), headers={**w.user, **key}),  # 409
        w.client.post("/api/jobs", json={"job_type": "Not A Type"}, headers=w.user),
        w.client.post("/api/jobs", data=BIG, headers={**w.user, **JSON}),
        w.client.post("/api/jobs", data=b"job_type=x", headers={**w.user, **TEXT}),
    ]


def _list_jobs(w):
    first = w.client.get("/api/jobs", query_string={"limit": 2}, headers=w.user)
    return [
        first,
        w.client.get("/api/jobs", query_string={"limit": 2, "cursor": first.get_json()["next_cursor"]}, headers=w.user),
        w.client.get("/api/jobs", headers=w.admin),
        w.client.get("/api/jobs", query_string={"cursor": "not-a-cursor"}, headers=w.user),
    ]


def _get_job(w):
    detail = w.client.get(f"/api/jobs/{w.image_job}", headers=w.user)
    return [
        detail,
        w.client.get(f"/api/jobs/{w.book_job}", headers=w.user),
        w.client.get(f"/api/jobs/{w.pending_job}", headers=w.admin),
        w.client.get(f"/api/jobs/{w.image_job}", headers={**w.user, "If-None-Match": detail.headers["ETag"]}),
        w.client.get(f"/api/jobs/{MISSING}", headers=w.user),
    ]


def _patch_job(w):
    path = f"/api/jobs/{w.pending_job}"
    return [
        w.client.patch(path, json={"user_id": w.owner}, headers=w.admin),
        w.client.patch(f"/api/jobs/{w.image_job}", json={"user_id": w.owner}, headers=w.admin),  # with artifacts
        w.client.patch(path, json={"user_id": False}, headers=w.admin),
        w.client.patch(path, json={"user_id": None}, headers=w.user),  # 403: not an admin
        w.client.patch(f"/api/jobs/{MISSING}", json={"user_id": None}, headers=w.admin),
        w.client.patch(path, data=BIG, headers={**w.admin, **JSON}),
        w.client.patch(path, data=b"user_id=1", headers={**w.admin, **TEXT}),
    ]


def _retry(w):
    job = w.client.post("/api/jobs", json={"job_type": "answers"}, headers=w.user).get_json()["id"]
    w.client.post(f"/api/jobs/{job}/cancel", headers=w.user)
    return [
        w.client.post(f"/api/jobs/{job}/retry", headers=w.user),
        w.client.post(f"/api/jobs/{w.pending_job}/retry", headers=w.admin),  # 409 not_retryable
        w.client.post(f"/api/jobs/{MISSING}/retry", headers=w.user),
    ]


def _cancel(w):
    job = w.client.post("/api/jobs", json={"job_type": "answers"}, headers=w.user).get_json()["id"]
    return [
        w.client.post(f"/api/jobs/{job}/cancel", headers=w.user),
        w.client.post(f"/api/jobs/{job}/cancel", headers=w.user),  # 409 not_cancellable
        w.client.post(f"/api/jobs/{MISSING}/cancel", headers=w.user),
    ]


def _actions(w):
    key = {"Idempotency-Key": uuid.uuid4().hex}
    return [
        w.client.post("/api/actions", json=action_body(), headers={**w.admin, **key}),
        w.client.post("/api/actions", json=action_body(), headers={**w.admin, **key}),  # the same action: 200
        w.client.post("/api/actions", json=action_body(commentaire="autre"), headers={**w.admin, **key}),  # 409
        w.client.post("/api/actions", json=action_body(actionType="lowercase"), headers=w.admin),
        w.client.post("/api/actions", data=BIG, headers={**w.admin, **JSON}),
        w.client.post("/api/actions", data=b"actionType=X", headers={**w.admin, **TEXT}),
    ]


def _list_notifications(w):
    return [
        w.client.get("/api/notifications", headers=w.user),
        w.client.get("/api/notifications", query_string={"unread": "true", "limit": 1}, headers=w.user),
        w.client.get("/api/notifications", query_string={"cursor": "not-a-cursor"}, headers=w.user),
    ]


def _read(w):
    return [
        w.client.post(f"/api/notifications/{w.notification}/read", headers=w.user),
        w.client.post("/api/notifications/999999999999/read", headers=w.user),
    ]


def _hook_own(path: str):
    def own(w):
        raw = hook_body()
        sign = signed(path)
        return [
            _hook(path)(w.client, sign, ""),
            w.client.post(path, data=b'{"job_id": ', headers=sign(b'{"job_id": ')),  # invalid_json
            w.client.post(path, data=raw, headers={**sign(raw), "X-Signature": "sha256=" + "0" * 64}),
            w.client.post(path, data=BIG, headers=sign(BIG)),
            w.client.post(path, data=raw, headers={**sign(raw), **TEXT}),
            _hook(path)(w.unconfigured, sign, ""),  # 503 not_configured
        ]

    return own


def _ops_own(path: str):
    # /readyz is ready in an app whose sweeps are hours apart: beat's tick stays recent.
    return lambda w: [(w.steady if path == "/readyz" else w.client).get(path), w.broken.get(path)]


OWN = {
    "POST /api/jobs": _post_jobs,
    "GET /api/jobs": _list_jobs,
    "GET /api/jobs/{job_id}": _get_job,
    "PATCH /api/jobs/{job_id}": _patch_job,
    "POST /api/jobs/{job_id}/retry": _retry,
    "POST /api/jobs/{job_id}/cancel": _cancel,
    "POST /api/actions": _actions,
    "GET /api/notifications": _list_notifications,
    "POST /api/notifications/{notification_id}/read": _read,
    **{f"POST {path}": _hook_own(path) for path in SECRETS},
    **{f"GET {path}": _ops_own(path) for path in ("/healthz", "/readyz", "/metrics", "/openapi.json")},
}


def answers(operation: str, w: World) -> list:
    """Every answer of `operation`: its own, then the refusals any operation can meet."""
    send = PLAIN[operation]
    path = operation.split(" ", 1)[1]
    got = OWN[operation](w)
    if path in SECRETS:
        got.append(send(w.client, signed(path), "?nul=%00"))  # 400
        got.append(send(w.client, unsigned, ""))  # 401 missing_signature
        got.append(send(w.broken, signed(path), ""))  # 503: the delivery cannot be recorded
        got += [send(w.limited, signed(path), "") for _ in range(3)]  # one an hour: 429
    elif path.startswith("/api/"):
        got.append(send(w.client, w.user, "?nul=%00"))  # 400
        got.append(send(w.client, {}, ""))  # 401
        got.append(send(w.broken, w.user, ""))  # 503: the token cannot be looked up
        fresh = w.fresh(admin=True)
        got += [send(w.limited, fresh, "") for _ in range(3)]  # one an hour: 429
    else:
        got.append(send(w.client, None, "?nul=%00"))  # 400
    return got


def test_every_operation_has_its_requests():
    assert sorted(PLAIN) == sorted(OWN) == OPERATIONS


@pytest.mark.parametrize("operation", OPERATIONS)
def test_real_answers_hold_to_the_document(world, operation):
    reached, problems = set(), []
    for response in answers(operation, world):
        reached.add(str(response.status_code))
        problems += [f"{response.status_code}: {problem}" for problem in drift(operation, response)]
    assert not problems, "\n".join(problems)
    method, path = operation.split(" ", 1)
    documented = set(DOCUMENT["paths"][path][method.lower()]["responses"])
    assert reached == documented, f"reached {sorted(reached)}, documented {sorted(documented)}"


# --- the check itself ------------------------------------------------------------------------------


def test_the_check_sees_an_answer_drift_from_its_schema(world):
    real = world.client.get(f"/api/jobs/{world.image_job}", headers=world.user)
    assert drift("GET /api/jobs/{job_id}", real) == []

    def variant(change, status=200, headers=None):
        body = real.get_json()
        change(body)
        response = world.app.response_class(json.dumps(body), status=status, mimetype="application/json")
        response.headers.update({"ETag": real.headers["ETag"]} if headers is None else headers)
        return drift("GET /api/jobs/{job_id}", response)

    assert variant(lambda b: b.update(progress="40"))  # a type changed
    assert variant(lambda b: b.pop("completed_at"))  # a key dropped
    assert variant(lambda b: b.update(extra=1))  # a key added
    assert variant(lambda b: b["artifacts"]["images"][0].pop("width"))  # deep inside
    assert variant(lambda b: b["events"][0].update(id=int(b["events"][0]["id"])))  # an id as a number
    assert variant(lambda b: None, headers={})  # no ETag
    assert variant(lambda b: None, status=201)  # an undocumented status
    refusal = world.app.response_class(json.dumps({"error": "gone", "message": "m"}), status=404,
                                       mimetype="application/json")
    assert drift("GET /api/jobs/{job_id}", refusal)  # a code the document does not give
