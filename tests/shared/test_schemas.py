"""shared/schemas.py: each custom field at its edges, as a client's payload meets it."""

import pytest
from marshmallow import Schema, ValidationError

from shared.schemas import (
    JOB_TYPE, ErrorValue, ExternalUserId, FullMatch, JsonInteger, PageLimit, Progress, StatusWord,
    job_create_schema,
)


class Probe(Schema):
    progress = Progress(allow_none=True)
    user_id = ExternalUserId()
    count = JsonInteger()
    limit = PageLimit()
    status = StatusWord()
    error = ErrorValue(allow_none=True)


PROBE = Probe()


def loaded(field: str, value):
    return PROBE.load({field: value})[field]


def refused(field: str, value) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        PROBE.load({field: value})
    return caught.value.messages[field]


@pytest.mark.parametrize("value, expected", [(0, 0), (100, 100), (0.0, 0), (99.5, 100), (49.4, 49), (100.0, 100),
                                             (None, None)])
def test_progress_accepts_0_to_100_and_rounds_floats(value, expected):
    assert loaded("progress", value) == expected


@pytest.mark.parametrize("value", [-1, 101, 100.01, -0.1, True, False, "50", float("nan"), float("inf"), [50]])
def test_progress_refuses_anything_else(value):
    assert refused("progress", value) == ["Must be a number from 0 to 100."]


@pytest.mark.parametrize("value, expected", [("alice", "alice"), (" bob ", "bob"), (42, "42"), (42.0, "42"),
                                             ("x" * 255, "x" * 255), (0, "0")])
def test_external_user_id_is_read_as_its_string_form(value, expected):
    assert loaded("user_id", value) == expected


@pytest.mark.parametrize("value", [True, 4.2, {"id": 1}, ["a"]])
def test_external_user_id_must_be_a_string_or_an_integer(value):
    assert refused("user_id", value) == ["Must be a string or an integer."]


@pytest.mark.parametrize("value", ["", "   ", "x" * 256])
def test_external_user_id_is_1_to_255_characters(value):
    assert refused("user_id", value) == ["Must be 1 to 255 characters."]


@pytest.mark.parametrize("value, expected", [(3, 3), (3.0, 3), (-2.0, -2), (2**62, 2**62)])
def test_json_integer_takes_a_float_that_holds_an_integer(value, expected):
    assert loaded("count", value) == expected and type(loaded("count", value)) is int


@pytest.mark.parametrize("value", [3.5, "3", True])
def test_json_integer_refuses_fractions_strings_and_booleans(value):
    assert refused("count", value) == ["Not a valid integer."]


@pytest.mark.parametrize("value, expected", [("1", 1), ("100", 100), ("020", 20), (50, 50)])
def test_page_limit_reads_ascii_digits_from_1_to_100(value, expected):
    assert loaded("limit", value) == expected


def test_page_limit_defaults_to_20():
    assert PROBE.load({})["limit"] == 20


@pytest.mark.parametrize("value", ["+5", " 5", "1_0", "٥", "1000", "", "5.0"])
def test_page_limit_refuses_other_spellings(value):
    assert refused("limit", value) == ["Must be a whole number from 1 to 100."]


@pytest.mark.parametrize("value", ["0", "101"])
def test_page_limit_refuses_numbers_out_of_range(value):
    assert refused("limit", value) == ["Must be greater than or equal to 1 and less than or equal to 100."]


@pytest.mark.parametrize("value, expected", [("completed", "completed"), (" Running ", "running"),
                                             ("CANCELED", "canceled")])
def test_status_word_is_known_and_normalised(value, expected):
    assert loaded("status", value) == expected


def test_an_unknown_status_word_lists_the_known_ones():
    (message,) = refused("status", "finished")
    assert message.startswith("Unknown status word 'finished'; one of: pending, queued, running, processing")
    assert message.endswith("cancelled, canceled.")


def test_a_status_word_must_be_a_string():
    assert refused("status", 1) == ["Not a valid string."]


@pytest.mark.parametrize("value", ["disk full", {"code": "E1", "detail": ["x"]}, None, "e" * 10_000])
def test_error_value_is_text_or_an_object(value):
    assert loaded("error", value) == value


@pytest.mark.parametrize("value, message", [
    (["a"], "Must be a string or an object."),
    (3, "Must be a string or an object."),
    ("e" * 10_001, "Longer than maximum length 10000."),
])
def test_error_value_refuses_other_types_and_long_text(value, message):
    assert refused("error", value) == [message]


@pytest.mark.parametrize("job_type", ["a", "image_generation", "report.pdf-v2", "a" + "b" * 63])
def test_job_types_that_fit(job_type):
    assert job_create_schema.load({"job_type": job_type}) == {"job_type": job_type, "params": {}}


@pytest.mark.parametrize("job_type", ["a" + "b" * 64, "a" + "b" * 62 + "\n", "Image", "1abc", "", "a b"])
def test_job_types_that_do_not(job_type):
    with pytest.raises(ValidationError) as caught:
        job_create_schema.load({"job_type": job_type})
    assert caught.value.messages == {"job_type": ["String does not match expected pattern."]}


def test_full_match_refuses_a_trailing_newline_that_re_match_lets_through():
    validator = FullMatch(JOB_TYPE)
    assert validator("abc") == "abc"
    assert validator.regex.match("abc\n")  # what marshmallow's Regexp would accept
    with pytest.raises(ValidationError):
        validator("abc\n")
