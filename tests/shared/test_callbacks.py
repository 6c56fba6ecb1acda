"""shared/callbacks.py: what a sender's raw body may hold, and the Callback each endpoint reads from it."""

import json

import pytest

from shared import callbacks
from shared.callbacks import BOOK_COMPLETION, IMAGE_COMPLETION, JOB_STATUS, Callback, PayloadError

UNSTORABLE = "Must not contain NUL or lone surrogate characters."


def refusal(body: bytes, endpoint=None) -> PayloadError:
    with pytest.raises(PayloadError) as caught:
        callbacks.load(endpoint, body) if endpoint else callbacks.parse_json(body)
    return caught.value


def nested(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


def test_nesting_up_to_the_limit_is_read():
    value = callbacks.parse_json(nested(callbacks.MAX_DEPTH))
    for _ in range(callbacks.MAX_DEPTH - 1):
        value = value[0]
    assert value == []


def test_one_level_deeper_is_refused_where_it_happens():
    error = refusal(nested(callbacks.MAX_DEPTH + 1))
    assert error.code == "validation_error"
    assert error.details == {".".join(["0"] * callbacks.MAX_DEPTH): ["Nests deeper than 32 levels."]}


def test_a_body_deep_enough_to_exhaust_the_parser_is_a_validation_error():
    error = refusal(nested(200_000))
    assert (error.code, error.message) == ("validation_error", "the body nests deeper than 32 levels")


@pytest.mark.parametrize("body, where", [
    (rb'{"message": "a\u0000b"}', "message"),
    (rb'{"data": {"images": [{"url": "ok"}, {"url": "\ud800"}]}}', "data.images.1.url"),
    (rb'"\udfff"', "body"),
])
def test_values_no_text_column_can_hold_are_refused_by_path(body, where):
    error = refusal(body)
    assert (error.code, error.details) == ("validation_error", {where: [UNSTORABLE]})


def test_a_key_with_nul_is_refused():
    error = refusal(rb'{"ok": {"k\u0000": 1}}')
    assert error.details == {"ok.k\x00": ["Keys must not contain NUL or lone surrogate characters."]}


def test_a_surrogate_pair_is_a_character_and_stored():
    assert callbacks.parse_json(rb'{"m": "\ud83d\ude00"}') == {"m": "\U0001F600"}


@pytest.mark.parametrize("body", [b'{"p": NaN}', b'{"p": Infinity}', b'{"p": -Infinity}', b'{"p": 1e999}',
                                  b'{"p": -1e400}'])
def test_numbers_postgresql_cannot_store_are_invalid_json(body):
    assert refusal(body).code == "invalid_json"


def test_large_finite_numbers_are_kept():
    assert callbacks.parse_json(b'{"f": 1.7e308, "i": 123456789012345678901234567890}') == {
        "f": 1.7e308, "i": 123456789012345678901234567890}


def test_a_utf8_byte_order_mark_is_skipped():
    assert callbacks.parse_json(b'\xef\xbb\xbf{"job_id": "j"}') == {"job_id": "j"}


@pytest.mark.parametrize("body", [b'{"m": "\xff"}', b"", b"{", b'{"a": 1} {"b": 2}', '{"m": "é"}'.encode("latin-1")])
def test_what_is_not_utf8_json_is_invalid_json(body):
    error = refusal(body)
    assert error.code == "invalid_json" and error.message.startswith("the body is not valid UTF-8 JSON")


def test_line_comments_go_but_slashes_in_strings_stay():
    text = '{\n  "url": "https://cdn.example/a//b", // where it is\n  "q": "say \\"//\\" twice" // quoted\n}// end'
    assert json.loads(callbacks.strip_line_comments(text)) == {"url": "https://cdn.example/a//b", "q": 'say "//" twice'}


def test_a_comment_without_a_newline_ends_the_text():
    assert callbacks.strip_line_comments('[1, 2] // last') == "[1, 2] "


def test_job_status_reads_its_fields_normalised():
    body = json.dumps({"job_id": " j-1 ", "status": " Completed ", "progress": 99.6, "message": "ok",
                       "result": {"k": [1]}, "user_id": 42.0, "job_type": "report.pdf", "extra": True}).encode()
    cb = callbacks.load(JOB_STATUS, body)
    assert cb == Callback(job_id="j-1", word="completed", progress=100, message="ok", result={"k": [1]},
                          user_id="42", job_type="report.pdf", payload=json.loads(body))


def test_job_status_takes_no_comments():
    assert refusal(b'{"job_id": "j", "status": "running"} // note', JOB_STATUS).code == "invalid_json"


def test_an_unknown_status_word_names_the_known_ones():
    error = refusal(b'{"job_id": "j", "status": "exploded"}', JOB_STATUS)
    assert error.code == "validation_error" and error.message == "the payload is not valid"
    assert error.details["status"][0].startswith("Unknown status word 'exploded'; one of: pending, queued, running")


def test_a_blank_job_id_is_refused():
    assert refusal(b'{"job_id": "   ", "status": "running"}', JOB_STATUS).details == {"job_id": ["Must not be blank."]}


@pytest.mark.parametrize("body", [b"[]", b'"text"', b"3", b"null"])
def test_the_body_must_be_an_object(body):
    error = refusal(body, JOB_STATUS)
    assert (error.code, error.message) == ("validation_error", "the body must be a JSON object")


def test_an_image_completion_with_comments_yields_its_images():
    body = b"""{
      "job_id": "img-1", "status": "completed", // the backend's annotation
      "data": {"images": [{"url": "https://cdn.example/1.png", "dimensions": "512x512"}],
               "metadata": {"model_name": "sdxl"}, "generated_at": "2024-05-01T10:00:00Z"}
    }"""
    cb = callbacks.load(IMAGE_COMPLETION, body)
    assert (cb.job_id, cb.word, cb.error) == ("img-1", "completed", None)
    assert cb.result == {"images_count": 1, "model": "sdxl", "generated_at": "2024-05-01T10:00:00Z"}
    assert cb.artifacts == {"images": [{"url": "https://cdn.example/1.png", "dimensions": "512x512"}],
                            "metadata": {"model_name": "sdxl"}}


def test_a_failed_image_job_reports_its_error_message_and_no_artifacts():
    body = b'{"job_id": "img-2", "status": "failed", "message": "step 3", "error_message": "GPU out of memory"}'
    cb = callbacks.load(IMAGE_COMPLETION, body)
    assert (cb.word, cb.error, cb.result, cb.artifacts) == ("failed", "GPU out of memory", None, None)
    fallback = callbacks.load(IMAGE_COMPLETION, b'{"job_id": "img-2", "status": "error", "message": "timeout"}')
    assert fallback.error == "timeout"


def test_a_completed_image_job_without_images_is_refused():
    error = refusal(b'{"job_id": "img-3", "status": "success", "data": {"images": []}}', IMAGE_COMPLETION)
    assert error.details == {"data": ["A completed image job needs a non-empty data.images."]}


def test_a_book_completion_yields_its_book():
    book = {"book_title": "Rivers", "word_count": 1200, "chapters": [{"title": "One"}, {"title": "Two"}]}
    cb = callbacks.load(BOOK_COMPLETION, json.dumps({"job_id": "b-1", "status": "done", "book_data": book}).encode())
    assert cb.result == {"book_title": "Rivers", "chapter_count": 2, "word_count": 1200}
    assert cb.artifacts == {"book": book}


def test_a_completed_book_needs_a_title_and_chapters():
    body = b'{"job_id": "b-2", "status": "completed", "book_data": {"book_title": " ", "chapters": [{}]}}'
    assert refusal(body, BOOK_COMPLETION).details == {
        "book_data": ["A completed book job needs book_data.book_title and book_data.chapters."]}


def test_the_payload_kept_is_the_one_sent():
    body = b'{"job_id": "j", "status": "RUNNING", "progress": 10.4, "custom": {"a": 1}}'
    cb = callbacks.load(JOB_STATUS, body)
    assert (cb.word, cb.progress) == ("running", 10)
    assert cb.payload == {"job_id": "j", "status": "RUNNING", "progress": 10.4, "custom": {"a": 1}}


def test_every_endpoint_is_found_by_the_name_it_is_stored_under():
    assert {name: e.path for name, e in callbacks.ENDPOINTS.items()} == {
        "n8n.job-status": "/api/n8n/hooks/job-status",
        "backend.image-completion": "/api/webhooks/image-completion",
        "backend.book-completion": "/api/webhooks/book-completion",
    }


def test_storable():
    assert callbacks.storable("plain é \U0001F600")
    assert not callbacks.storable("a\x00b")
    assert not callbacks.storable("\udc80")
