"""Keyset pages, newest first, and the opaque cursors that say where the next one starts."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, or_
from sqlalchemy.orm import Session

from shared.errors import BadCursor

# A cursor is `<microseconds since 1970-01-01 UTC>.<key>`, the key being the last row's id
# in hex of its UTF-8 (text ids) or in decimal (integer ids). Every string of this shape is
# a position, used as given (it is only where a page starts), so /openapi.json can say
# exactly which cursors are accepted: these patterns. Empty: the first page.
CURSOR_PATTERNS = {
    str: r"^(?:[0-9]{1,17}\.(?:[0-9a-f]{2}){0,1020})?$",  # 17 digits: before year 5000; 255 chars of 4 bytes
    int: r"^(?:[0-9]{1,17}\.[0-9]{1,18})?$",  # 18 digits: within BIGINT
}
_CURSORS = {key_type: re.compile(pattern) for key_type, pattern in CURSOR_PATTERNS.items()}
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MICROSECOND = timedelta(microseconds=1)


def encode_cursor(created_at: datetime, key: str | int) -> str:
    """The position after the row (created_at, key), newest first."""
    encoded = str(key) if isinstance(key, int) else key.encode("utf-8").hex()
    return f"{(created_at - EPOCH) // MICROSECOND}.{encoded}"


def decode_cursor(cursor: str, key_type: type = str) -> tuple[datetime, str | int]:
    """(created_at, key) of a cursor; BadCursor unless it has the shape CURSOR_PATTERNS gives."""
    if not _CURSORS[key_type].fullmatch(cursor):
        raise BadCursor("the cursor is not one this API issues")
    stamp, _, key = cursor.partition(".")
    if key_type is int:
        return EPOCH + int(stamp) * MICROSECOND, int(key)
    # Bytes we never issue still name a position: no text column holds a NUL nor bytes
    # that are not UTF-8, so they read as U+FFFD instead (never a lone surrogate).
    text = bytes.fromhex(key).decode("utf-8", errors="replace").replace("\x00", "\ufffd")
    return EPOCH + int(stamp) * MICROSECOND, text


def page(session: Session, query, created_col, key_col, limit: int, cursor: str | None, key_type=str):
    """A page of `query`'s rows, newest first, keyset-paginated on (created_at, key): the
    rows and the cursor of the next page (None on the last)."""
    if cursor:
        stamp, key = decode_cursor(cursor, key_type)
        query = query.where(or_(created_col < stamp, and_(created_col == stamp, key_col < key)))
    rows = session.scalars(query.order_by(created_col.desc(), key_col.desc()).limit(limit + 1)).all()
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].created_at, getattr(rows[-1], key_col.key))
    return rows, next_cursor
