"""Fuzzing the Flask app in-process (WSGI, on the test PostgreSQL database).

1. schemathesis against /openapi.json: every operation, positive and negative data, every
   check (no 5xx, answers as documented, what the document allows is accepted and what it
   forbids refused, authentication enforced, 405 with Allow), with an admin's and a plain
   user's Bearer token; the webhooks signed through their real schemes.
2. Signed random JSON bodies to the three sender webhooks: 200, 400 or 413, never 5xx, and
   every 4xx has the error shape {"error", "message"}.
3. Whatever a signed callback carries, once answered 200 it can be applied (the worker's
   own step, in-process): a 2xx means fully processed (CONTRACT §2).
4. Ids in paths, query strings and headers, with the characters HTTP lets through: never 5xx.

All seeded and derandomized, with bounded example counts: the same cases every run.
"""

from __future__ import annotations

import functools
import hashlib
import io
import itertools
import json
import time
from collections import Counter
from urllib.parse import quote

import pytest
import schemathesis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from schemathesis.checks import CHECKS, load_all_checks

from helpers import bearer, hmac_headers
from helpers.env import N8N_SECRET, WEBHOOK_SECRET
from ingress.openapi import spec
from shared import lifecycle, schemas
from shared.callbacks import ENDPOINTS
from shared.signing import hmac_signature, standard_webhooks_signature

SEED = 20240611
MAX_EXAMPLES = 30
# Every check schemathesis has, but the two that follow links between operations
# (use_after_free, ensure_resource_availability): the document declares none
# (test_the_document_declares_no_links), so they would check nothing.
LINK_CHECKS = {"use_after_free", "ensure_resource_availability"}
load_all_checks()  # the registry holds only not_a_server_error until the OpenAPI checks are imported


JUDGED: Counter = Counter()  # answers each check ran on, until the test hands them to `reliability`


def _counted(check):
    """The check, counting the answers it ran on (it returns True for a case it does not apply to)."""

    @functools.wraps(check)
    def judged(ctx, response, case):
        skipped = check(ctx, response, case)
        if skipped is not True:
            JUDGED[check.__name__] += 1
        return skipped

    return judged


CHECKS_ENABLED = [_counted(check) for check in CHECKS.get_all() if check.__name__ not in LINK_CHECKS]

# The whole generation is fixed: a seed, derandomized Hypothesis, no example database
# (a failure found once is not replayed from .hypothesis/ on the next run). No U+0000 in
# generated strings: every body, path and header refuses it (the document says so in
# its description, not in every string's schema). Credentials are ours, not generated.
SCHEMATHESIS_CONFIG = {
    "seed": SEED,
    "generation": {
        "max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none", "allow-x00": False,
        "with-security-parameters": False,
    },
}


@pytest.fixture
def admin_token(users):
    return users("fuzz-admin", admin=True)[1]


@pytest.fixture(params=["admin", "user"])
def identity(request, users):
    """Whose token the API operations carry: an admin's, then a plain user's. One per
    operation: the per-token rate limit (1200/min) is never reached by the fuzzing."""
    return request.param, users(f"fuzz-{request.param}", admin=request.param == "admin")[1]


# The document the app serves is spec(settings): loaded here without a database so that
# pytest can collect one test per operation (schemathesis.pytest.from_fixture, the lazy way
# to reach the session's `app`, fails under pytest 9.2: "'Function' object has no attribute
# '_nodeid'"); each case is sent to `app` over WSGI, and test_served_document_is_the_one_fuzzed
# checks that /openapi.json serves this very document.
# (A deep copy: the app serves the cached original, which schemathesis must not touch.)
schema = schemathesis.openapi.from_dict(
    json.loads(json.dumps(spec())), config=schemathesis.Config.from_dict(SCHEMATHESIS_CONFIG)
)


def test_served_document_is_the_one_fuzzed(client):
    served = client.get("/openapi.json")
    assert served.status_code == 200
    document = served.get_json()
    document.pop("servers")
    assert document == json.loads(json.dumps(spec()))


def test_every_check_is_enabled():
    assert {check.__name__ for check in CHECKS_ENABLED} == {
        "not_a_server_error", "status_code_conformance", "content_type_conformance", "response_headers_conformance",
        "response_schema_conformance", "negative_data_rejection", "positive_data_acceptance",
        "missing_required_header", "unsupported_method", "allow_header_conformance", "ignored_auth",
        "object_level_authorization",
    }


def test_the_document_declares_no_links():
    document = spec()
    responses = [r for path in document["paths"].values() for op in path.values() if isinstance(op, dict)
                 for r in op.get("responses", {}).values()]
    assert responses and not any("links" in response for response in responses)


# --- signing as the senders do ------------------------------------------------------------------

WEBHOOK_SECRETS = {
    "/api/n8n/hooks/job-status": N8N_SECRET,
    "/api/webhooks/image-completion": WEBHOOK_SECRET,
    "/api/webhooks/book-completion": WEBHOOK_SECRET,
}
# What a case carries in place of a signature: the signer computes the real one over the
# body exactly as it reaches the app. A probe that removes or replaces the credentials
# (ignored_auth) has no placeholder left, so it is sent unsigned or wrongly signed.
TO_SIGN = "to-be-signed"
_message_ids = itertools.count()


def signer(app):
    """The WSGI app behind a sender: signs each request that asks for it, over its raw body."""

    def signed(environ, start_response):
        if TO_SIGN in (environ.get("HTTP_X_SIGNATURE"), environ.get("HTTP_WEBHOOK_SIGNATURE")):
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
            secret = WEBHOOK_SECRETS[environ["PATH_INFO"]].encode()
            ts = str(int(time.time()))
            if environ.get("HTTP_X_SIGNATURE") == TO_SIGN:
                environ.update(HTTP_X_TIMESTAMP=ts, HTTP_X_SIGNATURE=hmac_signature(secret, ts, body))
            else:
                webhook_id = f"msg_fuzz_{next(_message_ids)}_{hashlib.sha256(body).hexdigest()[:12]}"
                environ.update(HTTP_WEBHOOK_ID=webhook_id, HTTP_WEBHOOK_TIMESTAMP=ts,
                               HTTP_WEBHOOK_SIGNATURE=standard_webhooks_signature(secret, webhook_id, ts, body))
        return app(environ, start_response)

    return signed


def credentials(case, token: str) -> dict:
    """A bearer token for the API; for a webhook, one of its real schemes in turn."""
    if case.path not in WEBHOOK_SECRETS:
        return bearer(token)
    schemes = [{"X-Signature": TO_SIGN, "X-Timestamp": "0"}, {"webhook-signature": TO_SIGN}]
    if case.path.startswith("/api/webhooks/"):
        schemes.append({"X-Webhook-Secret": WEBHOOK_SECRET})
    return schemes[int(hashlib.sha256(case.id.encode()).hexdigest(), 16) % len(schemes)]


@pytest.fixture
def processes_alive(app):
    """beat's tick and the worker canary just recorded, as a running deployment keeps them:
    /readyz answers for the web and its database, not for the processes this test lacks."""
    from shared import sweeps

    with app.extensions["sessionmaker"].begin() as db:
        for name in (sweeps.BEAT, sweeps.CANARY):
            sweeps.beat(db, name)


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_openapi_operations(case, app, identity, reliability, processes_alive):
    """Every operation of /openapi.json through the WSGI app, with every check: signed
    through the real schemes for the webhooks, as an admin and as a plain user for the API."""
    name, token = identity
    reliability.hostile_input(f"fuzzed API requests (schemathesis, every check, {name} token)")
    # Also on the schema: the checks that probe without credentials send there.
    case.operation.schema.app = signed = signer(app)
    try:
        case.call_and_validate(app=signed, headers=credentials(case, token), checks=CHECKS_ENABLED)
    finally:
        for check, count in JUDGED.items():
            reliability.checked(check, count)
        JUDGED.clear()


# --- signed random JSON to the sender webhooks -----------------------------------------------

WEBHOOKS = WEBHOOK_SECRETS

# Text as JSON senders can write it: any code point, and (often enough to be found with a
# few hundred examples) the ones that break naive code: lone surrogates, which JSON's \\u
# escapes can carry but UTF-8 cannot; NUL; separators; "//", which the backends' endpoints
# treat as a comment when the body does not parse.
SPECIAL = ["\ud800", "\udfff", "\x00", "\u2028", "\ufeff", "\u0301", "\U0001F600", "\\", '"', "/", "\n"]
# (Joined from characters: st.text() leaves lone surrogates out, whatever its alphabet.)
any_text = st.lists(st.characters(exclude_categories=()) | st.sampled_from(SPECIAL), max_size=40).map("".join)
scalars = (
    st.none() | st.booleans() | st.integers() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | any_text
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(any_text, children, max_size=5),
    max_leaves=25,
)

WORDS = sorted(lifecycle.WORDS) + ["COMPLETED", " running ", "unknown", ""]


def _callbacks(junk: bool):
    """Callback objects with plausible values (that mostly pass validation) or, with `junk`,
    sometimes any JSON value in a field's place (that fail one inner rule or another)."""

    def field(*kinds):
        return st.one_of(*kinds, json_values) if junk else st.one_of(*kinds)

    text = field(st.none(), any_text)
    image = st.fixed_dictionaries({}, optional={
        "file_path": text, "url": text, "description": text,
        "format": field(st.sampled_from(["png", "webp"]), any_text),
        "size_bytes": field(st.integers(min_value=-1, max_value=2**64)),
        "dimensions": field(st.sampled_from(["1024x768", "1x1", "0x0", "999999x999999", "10 X 10", "x"])),
    })
    chapter = st.fixed_dictionaries({}, optional={"title": text, "content": text, "description": text})
    any_object = st.dictionaries(any_text, json_values, max_size=3)
    return st.fixed_dictionaries(
        {
            "job_id": st.one_of(st.just("fuzz-job"), any_text.map(lambda t: "fuzz-" + t),
                                *([json_values] if junk else [])),
            "status": field(st.sampled_from(WORDS)),
        },
        optional={
            "progress": field(st.integers(min_value=-5, max_value=105), st.floats(min_value=-1, max_value=101)),
            "message": text,
            "user_id": field(any_text.map(lambda t: "fuzz-" + t), st.integers()),
            "result": json_values,
            "error": field(st.none(), any_text, any_object),
            "error_message": text,
            "timestamp": text,
            "environment": text,
            "job_type": field(st.sampled_from(["cover_letter", "Bad Type", "x" * 70])),
            "data": field(st.fixed_dictionaries({}, optional={
                "images": field(st.lists(image, min_size=1, max_size=3)), "metadata": field(any_object),
                "original_prompt": text, "generated_at": text,
            })),
            "book_data": field(st.fixed_dictionaries({}, optional={
                "book_title": text, "topic": text, "goal": text,
                "chapters": field(st.lists(chapter, min_size=1, max_size=3)),
                "word_count": field(st.integers(min_value=-1, max_value=2**40)),
                "chapter_count": field(st.integers(min_value=-1, max_value=2**40)),
                "outline": field(st.lists(json_values, max_size=3)),
            })),
            "extra": json_values,
        },
    )


callbacks = _callbacks(junk=False) | _callbacks(junk=True)


def _encode(value, ensure_ascii: bool) -> bytes:
    # Without ensure_ascii a lone surrogate cannot be UTF-8: it stays a \\u escape.
    return json.dumps(value, ensure_ascii=ensure_ascii).encode("utf-8", errors="backslashreplace")


def _with_comment(body: bytes, at: int) -> bytes:
    return body[:at] + b" // a comment, as the backends' docs write them\n" + body[at:]


json_bodies = st.builds(_encode, json_values, st.booleans())
callback_bodies = st.builds(_encode, callbacks, st.booleans())
bodies = st.one_of(
    json_bodies,
    callback_bodies,
    st.tuples(callback_bodies, st.integers(0, 300)).map(lambda t: _with_comment(*t)),
    # Bytes that are mostly not JSON, or not UTF-8, at all.
    st.binary(max_size=64),
    # Over the test limit (MAX_BODY_BYTES=65536): 413.
    st.integers(min_value=65_537, max_value=70_000).map(lambda n: b'{"job_id": "big", "pad": "' + b"x" * n + b'"}'),
)
FUZZ_SETTINGS = settings(max_examples=200, derandomize=True, database=None, deadline=None,
                         suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _post_signed(client, path: str, body: bytes):
    response = client.post(path, data=body, headers=hmac_headers(WEBHOOKS[path], body))
    assert response.status_code in (200, 400, 413), (response.status_code, response.get_data()[:500], body[:300])
    answer = response.get_json(silent=True)
    assert isinstance(answer, dict), response.get_data()[:500]
    if response.status_code == 200:
        assert answer["accepted"] is True and isinstance(answer["delivery_id"], str), answer
    else:
        assert isinstance(answer.get("error"), str) and isinstance(answer.get("message"), str), answer
        assert set(answer) <= {"error", "message", "details"}, answer
    return response


@pytest.mark.parametrize("path", list(WEBHOOKS))
def test_signed_random_json_never_5xx(client, path, reliability):
    """Any signed body: 200, 400 or 413 with the error shape, never 5xx (CONTRACT §2)."""
    seen: Counter = Counter()

    @FUZZ_SETTINGS
    @given(body=bodies)
    def post(body):
        reliability.hostile_input("signed random JSON bodies (hypothesis)")
        seen[_post_signed(client, path, body).status_code] += 1

    post()
    # The strategies reach every answer: some bodies recorded, some refused, some too large.
    assert seen[200] >= 5 and seen[400] >= 5 and seen[413] >= 1, dict(seen)


@pytest.mark.parametrize("path", list(WEBHOOKS))
def test_signed_random_callbacks_accepted_are_applied(app, client, path, reliability):
    """A 200 means the delivery will be fully processed (CONTRACT §2): whatever was
    accepted, the worker's own step (shared.deliveries.apply) applies without an error."""
    from sqlalchemy import select

    from shared import deliveries
    from shared.models import Delivery

    endpoint = next(e for e in ENDPOINTS.values() if e.path == path)
    sessionmaker = app.extensions["sessionmaker"]
    applied = Counter()

    @settings(FUZZ_SETTINGS, max_examples=100)
    @given(body=callback_bodies)
    def post_and_apply(body):
        reliability.hostile_input("signed random callbacks, accepted then applied (hypothesis)")
        response = _post_signed(client, path, body)
        if response.status_code != 200 or response.get_json()["duplicate"]:
            return
        with sessionmaker() as db:
            pk = db.scalar(select(Delivery.id).where(
                Delivery.endpoint == endpoint.name, Delivery.delivery_id == response.get_json()["delivery_id"]
            ))
        with sessionmaker.begin() as db:
            outcomes = deliveries.apply(db, [pk], max_attempts=5)  # what the worker's task runs; raises on failure
        applied["already applied" not in outcomes[-1]] += 1

    post_and_apply()
    assert applied[True] >= 5, dict(applied)


# --- accepted payloads at the edges of what fits, for jobs never seen ---------------------------

# Every bounded field at its bound and just past it, what Python's `$` lets through (a trailing
# newline), astral characters (one character, four bytes: columns count characters), integers
# beyond 64 bits, nested extras. Each generated value knows whether the contract accepts it, so
# both sides are checked: what is valid is accepted by the endpoint's validation
# (shared.callbacks.load), and whatever is accepted is applied by the worker's own step.

ASTRAL = "\U0001F600"
LONGEST_JOB_TYPE = "a" + "b" * 63
# Text JSON can carry and a column can store: no NUL, no lone surrogate.
storable_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=30)
storable_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.sampled_from([2**63, -(2**70), 10**300])
    | st.floats(allow_nan=False, allow_infinity=False) | storable_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(storable_text, children, max_size=4),
    max_leaves=20,
)


def _valid(strategy):
    return strategy.map(lambda value: (value, True))


def _refused(strategy):
    return strategy.map(lambda value: (value, False))


def _either(valid, refused):
    """Mostly valid values, so that a payload of several fields is often accepted whole."""
    return st.one_of(*[_valid(valid)] * 9, _refused(refused))


def _up_to(length: int):
    """Text of at most `length` characters: short ones, and some exactly at the bound."""
    return storable_text.map(lambda text: text[:length]) | st.sampled_from([
        "x" * length, ASTRAL * min(length, 255), "é" * (length - 1) + "\n", " " + "y" * (length - 2) + "\n",
    ])


def _past(length: int):
    return st.sampled_from(["x" * (length + 1), "x" * length + "\n"])


def _bounded(length: int):
    return _either(st.none() | _up_to(length), _past(length))


def _object(required: dict, optional: dict, rule=lambda value: True):
    """Dicts from strategies of (value, accepted) pairs, as (dict, accepted); `rule` is the
    schema's cross-field check, asked only when every field is acceptable."""

    def combine(pairs: dict):
        value = {key: item for key, (item, _) in pairs.items()}
        return value, all(ok for _, ok in pairs.values()) and rule(value)

    return st.fixed_dictionaries(required, optional=optional).map(combine)


_unknown_jobs = itertools.count()


def _unknown_job_id(text: str) -> str:
    prefix = f"edge-{next(_unknown_jobs)}-"  # a new job for each example: it is auto-created
    return prefix + text[: 255 - len(prefix)]


def _fits_user_id(value) -> bool:
    text = str(value).strip()
    return 1 <= len(text) <= 255


any_text = _valid(st.none() | storable_text | st.sampled_from(["x" * 20_000, ASTRAL * 2_000, "ligne\n"]))
job_ids = _either((_up_to(255) | st.just(" padded \n")).map(_unknown_job_id), st.just("x" * 256))
statuses = _either(
    st.sampled_from(sorted(lifecycle.WORDS)).flatmap(lambda word: st.sampled_from([word, word.upper(), f" {word}\n"])),
    st.sampled_from(["unknown", "running\nx", ""]),
)
user_ids = _either(
    (_up_to(255) | _past(255) | st.integers() | st.sampled_from([10**254, -(10**253), 10**255])),
    st.sampled_from([True, 1.5, {"id": 1}]),
).map(lambda pair: (pair[0], pair[1] and _fits_user_id(pair[0])))
PAYLOAD_FIELDS = {
    "progress": _either(st.none() | st.integers(0, 100) | st.floats(0, 100),
                        st.sampled_from([101, -1, 100.6, True, "50"])),
    "message": _bounded(10_000),
    "user_id": user_ids,
    "extra": _valid(storable_json),
}
SENDER_FIELDS = {**PAYLOAD_FIELDS, "timestamp": any_text, "environment": any_text, "error_message": _bounded(10_000)}

job_status_payloads = _object({"job_id": job_ids, "status": statuses}, optional={
    **PAYLOAD_FIELDS,
    "result": _valid(storable_json),
    "error": _bounded(10_000) | _valid(st.dictionaries(storable_text, storable_json, max_size=3)),
    "job_type": _either(st.from_regex(schemas.JOB_TYPE[1:-1], fullmatch=True) | st.just(LONGEST_JOB_TYPE),
                        st.sampled_from([LONGEST_JOB_TYPE + "\n", "abc\n", "x" * 65, "Abc"])),
})

image = _object({}, optional={
    "file_path": any_text, "url": any_text, "description": any_text,
    "format": _bounded(32),
    "size_bytes": _either(st.none() | st.integers(0, 2**62), st.sampled_from([-1, 2**62 + 1, True])),
    "dimensions": _either(st.none() | st.sampled_from(["1024x768", " 1 X 1\n", "999999×999999", "0x0"]),
                          st.sampled_from(["١٠٢٤x٧٦٨", "１x１", "1000000x1", "10x10\nx"])),
    "extra": _valid(storable_json),
})
images = st.lists(image, max_size=3).map(lambda items: ([v for v, _ in items], all(ok for _, ok in items)))
image_data = _object({}, optional={
    "images": images | _valid(st.none()),
    "metadata": _valid(st.none() | st.fixed_dictionaries({}, optional={
        "model_name": storable_json | st.just("m" * 300),
        "generation_time_seconds": storable_json | st.sampled_from([10**400, 1e308]),
    })),
    "job_id": any_text, "status": any_text, "generated_at": any_text, "original_prompt": any_text,
})


def _completed_has_images(payload: dict) -> bool:
    images = (payload.get("data") or {}).get("images")
    return lifecycle.canonical(payload["status"]) != lifecycle.SUCCEEDED or bool(images)


image_payloads = _object({"job_id": job_ids, "status": statuses}, optional={
    **SENDER_FIELDS, "data": image_data | _valid(st.none()),
}, rule=_completed_has_images)

chapter = st.fixed_dictionaries({}, optional={
    "title": st.none() | storable_text, "content": st.none() | storable_text | st.just("mot " * 5_000),
    "description": st.none() | storable_text, "extra": storable_json,
})
count = _either(st.none() | st.integers(0, 2**31 - 1), st.sampled_from([-1, 2**31, True]))
book_data = _object({}, optional={
    "book_title": _valid(st.none() | storable_text | st.sampled_from([ASTRAL * 300, "Titre\n", " "])),
    "topic": any_text, "goal": any_text, "generated_at": any_text,
    "outline": _valid(st.none() | st.lists(storable_json, max_size=3)),
    "chapters": _valid(st.none() | st.lists(chapter, max_size=3)),
    "word_count": count, "chapter_count": count,
})


def _completed_has_a_book(payload: dict) -> bool:
    book = payload.get("book_data") or {}
    return lifecycle.canonical(payload["status"]) != lifecycle.SUCCEEDED or bool(
        (book.get("book_title") or "").strip() and book.get("chapters")
    )


book_payloads = _object({"job_id": job_ids, "status": statuses}, optional={
    **SENDER_FIELDS, "book_data": book_data | _valid(st.none()),
}, rule=_completed_has_a_book)

EDGE_PAYLOADS = {
    "/api/n8n/hooks/job-status": (job_status_payloads, [
        # Accepted with `$`, then refused by varchar(64) in the worker until it gave up.
        ({"job_id": "edge-newline", "status": "running", "job_type": LONGEST_JOB_TYPE + "\n"}, False),
        ({"job_id": "edge-longest", "status": "running", "job_type": LONGEST_JOB_TYPE, "user_id": 10**254}, True),
    ]),
    "/api/webhooks/image-completion": (image_payloads, [
        ({"job_id": "edge-digits", "status": "completed", "data": {"images": [{"dimensions": "١٠x١٠"}]}}, False),
        # float(10**400) raises: a metadata figure beyond double range.
        ({"job_id": "edge-huge-figure", "status": "completed", "data": {
            "images": [{"url": "u", "format": ASTRAL * 32, "dimensions": "999999x999999"}],
            "metadata": {"generation_time_seconds": 10**400, "model_name": "m" * 300}}}, True),
    ]),
    "/api/webhooks/book-completion": (book_payloads, [
        ({"job_id": "edge-book", "status": "completed", "user_id": -(10**253), "book_data": {
            "book_title": ASTRAL * 300, "chapters": [{"title": "t\n"}], "word_count": 2**31 - 1}}, True),
    ]),
}


def _stored_as_sent(db, endpoint, payload: dict) -> None:
    """The auto-created job holds what the payload said, whole."""
    from shared import artifacts
    from shared.models import Job

    job = db.get(Job, payload["job_id"].strip())
    assert job is not None, payload["job_id"]
    assert job.job_type == (payload.get("job_type") or endpoint.job_type)
    if payload.get("user_id") is not None:
        assert job.user.external_id == str(payload["user_id"]).strip()
    if job.status == lifecycle.SUCCEEDED:
        produced = artifacts.for_jobs(db, [job.id])[job.id]
        if "data" in payload:
            assert len(produced["images"]) == len(payload["data"]["images"])
        if "book_data" in payload:
            book = payload["book_data"]
            assert produced["book"]["title"] == book["book_title"]
            assert produced["book"]["chapter_count"] == len(book["chapters"])


@pytest.mark.parametrize("path", list(EDGE_PAYLOADS))
def test_edge_payloads_for_unknown_jobs_are_accepted_then_applied(app, client, path, reliability):
    """Nothing that passes validation fails in a worker (a lost delivery otherwise), and
    every payload the contract allows passes it."""
    from sqlalchemy import select

    from shared import deliveries
    from shared.models import Delivery

    endpoint = next(e for e in ENDPOINTS.values() if e.path == path)
    sessionmaker = app.extensions["sessionmaker"]
    strategy, examples = EDGE_PAYLOADS[path]
    seen: Counter = Counter()

    def post_and_apply(case):
        reliability.hostile_input("edge payloads for unknown jobs, accepted then applied (hypothesis)")
        payload, valid = case
        # ensure_ascii=False: astral characters cost 4 bytes, not 12, under the test's body limit.
        response = _post_signed(client, path, json.dumps(payload, ensure_ascii=False).encode())
        if response.status_code == 413:
            seen["too large"] += 1
            return
        if response.status_code == 200:
            with sessionmaker() as db:
                pk = db.scalar(select(Delivery.id).where(
                    Delivery.endpoint == endpoint.name, Delivery.delivery_id == response.get_json()["delivery_id"]
                ))
            with sessionmaker.begin() as db:
                deliveries.apply(db, [pk], max_attempts=5)  # the worker's own step; raises on failure
            with sessionmaker() as db:
                _stored_as_sent(db, endpoint, payload)
        assert (response.status_code == 200) == valid, (response.status_code, response.get_json())
        seen["applied" if valid else "refused"] += 1

    test = given(case=strategy)(post_and_apply)
    for case in examples:
        test = example(case=case)(test)
    settings(FUZZ_SETTINGS, max_examples=150)(test)()
    assert seen["applied"] >= 40 and seen["refused"] >= 5, dict(seen)


# --- ids in paths, query strings and headers ---------------------------------------------------

# What reaches the app over HTTP: a path or query string may carry any character (%00
# included, percent-encoded); gunicorn refuses control characters in header values, so
# headers carry tab, printable ASCII and the rest of Latin-1.
path_text = st.lists(st.characters(exclude_categories=("Cs",)) | st.sampled_from(["\x00", "/", "%", "é"]),
                     min_size=1, max_size=30).map("".join)
header_text = st.lists(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f")
                       | st.just("\t"), min_size=1, max_size=30).map("".join)
pct = lambda value: quote(value, safe="")  # noqa: E731

ID_TARGETS = {
    "GET /api/jobs/<id>": (path_text, lambda c, h, v: c.get(f"/api/jobs/{pct(v)}", headers=h)),
    "POST /api/jobs/<id>/retry": (path_text, lambda c, h, v: c.post(f"/api/jobs/{pct(v)}/retry", headers=h)),
    "POST /api/jobs/<id>/cancel": (path_text, lambda c, h, v: c.post(f"/api/jobs/{pct(v)}/cancel", headers=h)),
    "PATCH /api/jobs/<id>": (path_text, lambda c, h, v: c.patch(f"/api/jobs/{pct(v)}", json={"user_id": None}, headers=h)),
    "POST /api/notifications/<id>/read": (path_text, lambda c, h, v: c.post(f"/api/notifications/{pct(v)}/read", headers=h)),
    "GET /api/jobs?cursor": (path_text, lambda c, h, v: c.get(f"/api/jobs?cursor={pct(v)}", headers=h)),
    "GET /api/jobs?job_type": (path_text, lambda c, h, v: c.get(f"/api/jobs?job_type={pct(v)}", headers=h)),
    "GET /api/notifications?job_id": (path_text, lambda c, h, v: c.get(f"/api/notifications?job_id={pct(v)}", headers=h)),
    "GET /api/notifications?cursor": (path_text, lambda c, h, v: c.get(f"/api/notifications?cursor={pct(v)}", headers=h)),
    "POST /api/jobs Idempotency-Key": (header_text, lambda c, h, v: c.post(
        "/api/jobs", json={"job_type": "fuzz"}, headers={**h, "Idempotency-Key": v})),
    "webhook X-Delivery-Id": (header_text, lambda c, h, v: _signed(c, {"X-Delivery-Id": v})),
    "webhook Idempotency-Key": (header_text, lambda c, h, v: _signed(c, {"Idempotency-Key": v})),
}


def _signed(client, extra: dict):
    body = json.dumps({"job_id": "fuzz-ids", "status": "running"}).encode()
    return client.post("/api/n8n/hooks/job-status", data=body, headers=hmac_headers(N8N_SECRET, body, **extra))


@pytest.mark.parametrize("target", list(ID_TARGETS))
def test_ids_in_paths_queries_and_headers_never_5xx(client, admin_token, target, reliability):
    """Any id a client can put in a path, a query string or a header: an answer, never 5xx."""
    strategy, send = ID_TARGETS[target]

    @settings(FUZZ_SETTINGS, max_examples=60)
    @given(value=strategy)
    def request(value):
        reliability.hostile_input("random ids in paths, queries and headers (hypothesis)")
        response = send(client, bearer(admin_token), value)
        assert response.status_code < 500, f"{response.status_code} for {value!r}: {response.get_data()[:300]!r}"
        if response.status_code >= 400:
            answer = response.get_json(silent=True)
            assert isinstance(answer, dict) and {"error", "message"} <= set(answer), response.get_data()[:300]

    request()
