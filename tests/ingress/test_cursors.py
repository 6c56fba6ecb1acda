"""Cursors: `<microseconds>.<key>`, every string of the documented shape is a position and
anything else is 400 validation_error; never a 500 (issue #14.6)."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import bearer
from shared.paging import CURSOR_PATTERNS

SETTINGS = settings(max_examples=60, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
LIST = {str: "/api/jobs", int: "/api/notifications"}


@pytest.fixture
def token(users):
    return users("cursor-admin", admin=True)[1]


def test_the_lone_surrogate_cursor_of_issue_14_is_a_validation_error(client, token):
    cursor = "WyIyMDI2LTAxLTAxVDAwOjAwOjAwKzAwOjAwIiwgImFcdWQ4MDAiXQ"
    response = client.get(f"/api/jobs?cursor={cursor}", headers=bearer(token))
    assert (response.status_code, response.json["error"]) == (400, "validation_error")
    assert "cursor" in response.json["details"]


@pytest.mark.parametrize("key_type", [str, int])
def test_every_cursor_of_the_documented_shape_is_a_position(client, token, key_type):
    @SETTINGS
    @given(cursor=st.from_regex(CURSOR_PATTERNS[key_type], fullmatch=True))
    def listed(cursor):
        response = client.get(LIST[key_type], query_string={"cursor": cursor}, headers=bearer(token))
        assert response.status_code == 200, (cursor, response.json)

    listed()


@pytest.mark.parametrize(
    "cursor",
    ["0.00", "1.eda080", "1.ff", "1.c0af", "99999999999999999." + "f4908080" * 255, "0.", "00000000000000001.61"],
)
def test_text_keys_no_column_can_hold_are_still_positions(client, token, cursor):
    # NUL, an encoded surrogate, bytes that are not UTF-8, the largest: read as U+FFFD.
    assert client.get("/api/jobs", query_string={"cursor": cursor}, headers=bearer(token)).status_code == 200


@pytest.mark.parametrize(
    "key_type, cursor",
    [(str, "1.ABCD"), (str, "1.abc"), (str, "1.ab\n"), (str, "١.ab"), (str, "123"), (str, ".ab"),
     (str, "1." + "00" * 1021), (str, "123456789012345678.ab"), (str, "1 .ab"), (str, "-1.ab"),
     (int, "1.ab"), (int, "1.1234567890123456789"), (int, "1.-1"), (int, "1.")],
)
def test_anything_else_is_a_validation_error(client, token, key_type, cursor):
    response = client.get(LIST[key_type], query_string={"cursor": cursor}, headers=bearer(token))
    assert (response.status_code, response.json["error"]) == (400, "validation_error")
