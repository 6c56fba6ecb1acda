"""shared/errors.py: each refusal carries what ingress.errors.ANSWERS turns into its answer."""

from __future__ import annotations

import pytest

from shared.errors import BadCursor, Conflict, NotFound


def test_a_conflict_carries_its_code_and_message():
    refusal = Conflict("not_retryable", "only failed jobs can be retried")
    assert (refusal.code, refusal.message, str(refusal)) == (
        "not_retryable", "only failed jobs can be retried", "only failed jobs can be retried")


def test_not_found_carries_its_message_and_is_a_lookup_error():
    refusal = NotFound("no such job")
    assert isinstance(refusal, LookupError)
    assert (refusal.message, str(refusal)) == ("no such job", "no such job")


def test_a_bad_cursor_is_a_value_error_whose_text_is_its_message():
    with pytest.raises(ValueError, match="^the cursor is not one this API issues$"):
        raise BadCursor("the cursor is not one this API issues")
