"""shared/paging.py: cursors name exactly the row they were made from, only the documented
shapes are cursors, and pages run newest first, each continuing exactly where the last ended."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from shared.errors import BadCursor
from shared.models import Job
from shared.paging import CURSOR_PATTERNS, decode_cursor, encode_cursor, page

SETTINGS = settings(max_examples=100, derandomize=True, database=None, deadline=None)
STAMPS = st.datetimes(datetime(1970, 1, 1), datetime(4999, 12, 31), timezones=st.just(timezone.utc))
KEYS = {
    str: st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=255),
    int: st.integers(min_value=1, max_value=10**18 - 1),  # identity ids: a sequence from 1
}


@pytest.mark.parametrize("key_type", [str, int])
def test_a_cursor_names_exactly_the_row_it_was_made_from_and_has_the_documented_shape(key_type):
    @SETTINGS
    @given(stamp=STAMPS, key=KEYS[key_type])
    def round_trip(stamp, key):
        cursor = encode_cursor(stamp, key)
        assert re.fullmatch(CURSOR_PATTERNS[key_type], cursor), cursor
        assert decode_cursor(cursor, key_type) == (stamp, key)

    round_trip()


@pytest.mark.parametrize(
    "key_type, cursor",
    [(str, "1.ABCD"), (str, "1.abc"), (str, "123"), (str, ".ab"), (str, "-1.ab"), (str, "1." + "00" * 1021),
     (int, "1.ab"), (int, "1.1234567890123456789"), (int, "1.")],
)
def test_other_shapes_are_refused_as_bad_cursors(key_type, cursor):
    with pytest.raises(BadCursor):
        decode_cursor(cursor, key_type)


def test_pages_run_newest_first_and_each_continues_exactly_where_the_last_ended(session):
    """Distinct times and ties in one microsecond, ids beyond ASCII: every row once, in order."""
    base = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
    made = {"a-1": base, "é-2": base, "日本-3": base, "😀-4": base + timedelta(seconds=1),
            "z-5": base - timedelta(seconds=1), "Z-6": base}
    for job_id, created_at in made.items():
        session.add(Job(id=job_id, job_type="paging.pages", status="pending", progress=0, params={}, source="api",
                        attempts=0, revision=1, created_at=created_at, updated_at=created_at))
    session.flush()
    query = select(Job).where(Job.job_type == "paging.pages")
    whole, last = page(session, query, Job.created_at, Job.id, limit=10, cursor=None)
    # Ties are ordered by the database's collation of the ids, so the one page is the reference.
    newest_first = [row.id for row in whole]
    assert last is None and sorted(newest_first) == sorted(made)
    assert [made[job_id] for job_id in newest_first] == sorted(made.values(), reverse=True)
    assert newest_first[0] == "😀-4" and newest_first[-1] == "z-5"

    seen, cursor, pages = [], None, 0
    while True:
        rows, cursor = page(session, query, Job.created_at, Job.id, limit=2, cursor=cursor)
        seen += [row.id for row in rows]
        pages += 1
        if cursor is None:
            break
    assert seen == newest_first and pages == 3
