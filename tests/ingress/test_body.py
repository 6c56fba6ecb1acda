"""ingress/body.py's rules for reading a request: media type and charset, Idempotency-Key,
the query, a JSON-object body, NUL in URLs and headers. Run inside a request context of the app."""

import pytest
from marshmallow import ValidationError

from ingress import body
from ingress.errors import ApiError
from shared.schemas import job_create_schema, job_list_query_schema


def refusal(app, call, **request) -> tuple[int, str, str]:
    with app.test_request_context("/api/jobs", **request):
        with pytest.raises(ApiError) as caught:
            call()
    return caught.value.http_status, caught.value.code, caught.value.message


MEDIA_TYPE = (415, "unsupported_media_type", "send Content-Type: application/json")
CHARSET = (415, "unsupported_media_type", "send the JSON body in UTF-8 (charset=utf-8)")


@pytest.mark.parametrize("content_type", [
    None, "application/json", "application/json; charset=utf-8", "application/json; charset=UTF8",
    "application/json; charset=\" utf-8 \"", "application/problem+json", "application/vnd.api+json; charset=utf-8",
])
def test_json_labels_in_utf8_are_accepted(app, content_type):
    with app.test_request_context("/api/jobs", method="POST", data=b"{}", content_type=content_type):
        assert body.require_json_content_type() is None


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/jsonx"])
def test_other_media_types_are_415(app, content_type):
    assert refusal(app, body.require_json_content_type, method="POST", data=b"{}",
                   content_type=content_type) == MEDIA_TYPE


@pytest.mark.parametrize("charset", ["latin-1", "utf-16", "ascii", "utf-8x"])
def test_other_charsets_are_415(app, charset):
    assert refusal(app, body.require_json_content_type, method="POST", data=b"{}",
                   content_type=f"application/json; charset={charset}") == CHARSET


@pytest.mark.parametrize("encoding", ["gzip", "br", "deflate, gzip"])
def test_a_compressed_body_is_415(app, encoding):
    assert refusal(app, body.read_body, method="POST", data=b"\x1f\x8b", content_type="application/json",
                   headers={"Content-Encoding": encoding}) == (
        415, "unsupported_media_type", "send the body uncompressed, without Content-Encoding")


def test_an_identity_encoded_body_is_read(app):
    with app.test_request_context("/api/jobs", method="POST", data=b'{"job_type": "x"}',
                                  headers={"Content-Encoding": " Identity "}):
        body.read_body()
        assert body.raw_body() == b'{"job_type": "x"}'


def test_a_body_over_the_limit_is_413(app):
    limit = app.config["BODY_LIMIT"]
    with app.test_request_context("/api/jobs", method="POST", data=b"x" * limit):
        assert len(body.raw_body()) == limit
    assert refusal(app, body.raw_body, method="POST", data=b"x" * (limit + 1)) == (
        413, "payload_too_large", f"the body is larger than {limit} bytes")


@pytest.mark.parametrize("header, expected", [
    (None, None), ("abc", "abc"), ("  key-1  ", "key-1"), ("k" * 255, "k" * 255),
])
def test_idempotency_key_is_trimmed(app, header, expected):
    headers = {} if header is None else {"Idempotency-Key": header}
    with app.test_request_context("/api/jobs", method="POST", headers=headers):
        assert body.idempotency_key() == expected


@pytest.mark.parametrize("header", ["", "   ", "k" * 256])
def test_idempotency_key_of_no_or_too_many_characters_is_400(app, header):
    assert refusal(app, body.idempotency_key, method="POST", headers={"Idempotency-Key": header}) == (
        400, "validation_error", "Idempotency-Key must be 1 to 255 characters")


def test_the_query_is_loaded_by_its_schema(app):
    with app.test_request_context("/api/jobs?status=running&limit=5&job_type=report"):
        assert body.query(job_list_query_schema) == {"status": "running", "limit": 5, "job_type": "report"}
    with app.test_request_context("/api/jobs"):
        assert body.query(job_list_query_schema) == {"limit": 20}


def test_a_repeated_query_key_is_refused_by_name(app):
    with app.test_request_context("/api/jobs?status=running&status=failed&limit=5"):
        with pytest.raises(ApiError) as caught:
            body.query(job_list_query_schema)
    error = caught.value
    assert (error.http_status, error.code, error.details) == (400, "validation_error", {"status": ["Given more than once."]})


def test_an_unknown_query_key_is_a_validation_error(app):
    with app.test_request_context("/api/jobs?sort=desc"):
        with pytest.raises(ValidationError) as caught:
            body.query(job_list_query_schema)
    assert caught.value.messages == {"sort": ["Unknown field."]}


def test_a_json_object_body_is_loaded_and_an_empty_one_is_an_empty_object(app):
    with app.test_request_context("/api/jobs", method="POST", json={"job_type": "report", "params": {"a": 1}}):
        assert body.json_object(job_create_schema) == {"job_type": "report", "params": {"a": 1}}
    with app.test_request_context("/api/jobs", method="POST", data=b"  ", content_type="application/json"):
        with pytest.raises(ValidationError) as caught:
            body.json_object(job_create_schema)
    assert caught.value.messages == {"job_type": ["Missing data for required field."]}


def test_a_json_body_that_is_no_object_is_400(app):
    assert refusal(app, lambda: body.json_object(job_create_schema), method="POST", data=b"[1]",
                   content_type="application/json") == (400, "validation_error", "the body must be a JSON object")


@pytest.mark.parametrize("request_args", [
    {"path": "/api/jobs?status=%00"},
    {"path": "/api/jobs", "headers": {"X-Note": "a\x00b"}},
])
def test_nul_in_the_query_or_a_header_is_400(app, request_args):
    path = request_args.pop("path")
    with app.test_request_context(path, **request_args):
        with pytest.raises(ApiError) as caught:
            body.refuse_nul_in_url_and_headers()
    assert (caught.value.http_status, caught.value.message) == (400, "NUL characters are not allowed in URLs or headers")


def test_headers_are_read_by_lowercase_name(app):
    with app.test_request_context("/api/jobs", method="POST", data=b"{}", content_type="application/json",
                                  headers={"X-Delivery-Id": "d-1", "Idempotency-Key": "k"}):
        headers = body.lowercase_headers()
    assert (headers["x-delivery-id"], headers["idempotency-key"], headers["content-type"]) == (
        "d-1", "k", "application/json")
    assert headers["content-length"] == "2"
