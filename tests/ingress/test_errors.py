"""ingress/errors.py: each exception a request can meet becomes the contract's answer
(CONTRACT §2), whichever view raises it."""

from __future__ import annotations

import pytest
from marshmallow import ValidationError
from sqlalchemy.exc import IntegrityError, OperationalError, TimeoutError as PoolTimeout
from werkzeug.exceptions import MethodNotAllowed

from ingress.errors import ANSWERS, ApiError
from ingress.recorder import RecordTimeout
from shared.callbacks import PayloadError
from shared.errors import BadCursor, Conflict, NotFound
from shared.signing import SignatureError

RETRY = {"Retry-After": "5"}
CASES = {
    # exception raised -> (status, body, headers the answer must carry)
    "conflict": (Conflict("not_retryable", "only failed jobs"), 409,
                 {"error": "not_retryable", "message": "only failed jobs"}, {}),
    "bad cursor": (BadCursor("the cursor is not one this API issues"), 400,
                   {"error": "validation_error", "message": "the cursor is not one this API issues",
                    "details": {"cursor": ["the cursor is not one this API issues"]}}, {}),
    "not found": (NotFound("no such job"), 404, {"error": "not_found", "message": "no such job"}, {}),
    "payload": (PayloadError("invalid_json", "not JSON", {"at": 3}), 400,
                {"error": "invalid_json", "message": "not JSON", "details": {"at": 3}}, {}),
    "payload without details": (PayloadError("invalid_json", "not JSON"), 400,
                                {"error": "invalid_json", "message": "not JSON"}, {}),
    "signature": (SignatureError("stale_timestamp", "too old"), 401,
                  {"error": "stale_timestamp", "message": "too old"}, {}),
    "validation": (ValidationError({"job_type": ["Missing data for required field."]}), 400,
                   {"error": "validation_error", "message": "the request is not valid",
                    "details": {"job_type": ["Missing data for required field."]}}, {}),
    "record timeout": (RecordTimeout("the database did not record the delivery within 10 s"), 503,
                       {"error": "unavailable", "message": "the database did not record the delivery within 10 s"},
                       RETRY),
    "database": (OperationalError("SELECT 1", {}, Exception("server closed the connection")), 503,
                 {"error": "unavailable", "message": "the database is unavailable; try again shortly"}, RETRY),
    "database refusal": (IntegrityError("INSERT", {}, Exception("duplicate key")), 503,
                         {"error": "unavailable", "message": "the database is unavailable; try again shortly"}, RETRY),
    "pool": (PoolTimeout("QueuePool limit reached"), 503,
             {"error": "unavailable", "message": "the database is unavailable; try again shortly"}, RETRY),
    "http": (MethodNotAllowed(["GET"]), 405,
             {"error": "method_not_allowed", "message": MethodNotAllowed.description}, {"Allow": "GET"}),
    "answer": (ApiError(429, "rate_limited", "slow down", headers={"Retry-After": "7"}), 429,
               {"error": "rate_limited", "message": "slow down"}, {"Retry-After": "7"}),
    "anything else": (KeyError("x"), 500,
                      {"error": "internal_error", "message": "an unexpected error occurred; it has been logged"}, {}),
}


@pytest.fixture(scope="module")
def raising(settings):
    """An app with a route that raises what the test puts in its config["TO_RAISE"]."""
    from ingress import create_app

    app = create_app(settings)

    def view():
        raise app.config["TO_RAISE"]

    app.add_url_rule("/raise", view_func=view)
    return app


@pytest.mark.parametrize("name", list(CASES))
def test_each_exception_has_its_answer(raising, name):
    exception, status, body, headers = CASES[name]
    raising.config["TO_RAISE"] = exception
    response = raising.test_client().get("/raise")
    assert response.status_code == status
    assert response.mimetype == "application/json"
    assert response.get_json() == body
    assert {name: response.headers.get(name) for name in headers} == headers


def test_every_mapped_exception_is_tried():
    tried = {type(exception) for exception, *_ in CASES.values()}
    assert all(any(issubclass(t, mapped) for t in tried) for mapped in ANSWERS)
