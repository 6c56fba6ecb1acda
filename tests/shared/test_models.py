"""shared/models.py: every timestamp column takes and gives back timezone-aware UTC, on
PostgreSQL and on the embedded SQLite default alike; a naive datetime is refused."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session

from shared.models import User, utcnow

PARIS_SUMMER = timezone(timedelta(hours=2))
WRITTEN = datetime(2026, 7, 1, 14, 30, 0, 250000, tzinfo=PARIS_SUMMER)


def _read_back(session: Session, written: datetime) -> datetime:
    external_id = f"models-{secrets.token_hex(4)}"
    session.add(User(external_id=external_id, created_at=written))
    session.flush()
    session.expunge_all()  # read from the database, not the identity map
    return session.scalar(select(User.created_at).where(User.external_id == external_id))


def _assert_utc(read: datetime):
    assert read == WRITTEN
    assert read.utcoffset() == timedelta(0)
    assert read.astimezone(timezone.utc).replace(tzinfo=None) == datetime(2026, 7, 1, 12, 30, 0, 250000)


def test_postgresql_gives_back_the_instant_written_as_aware_utc(session):
    _assert_utc(_read_back(session, WRITTEN))


def test_postgresql_in_another_time_zone_still_gives_back_utc(session):
    # A server (or a pooler) whose TimeZone is not UTC answers timestamptz in its own zone.
    session.execute(text("SET LOCAL TimeZone = 'Europe/Paris'"))
    _assert_utc(_read_back(session, WRITTEN))


def test_sqlite_gives_back_the_instant_written_as_aware_utc(sqlite_engine):
    with Session(sqlite_engine) as session:
        _assert_utc(_read_back(session, WRITTEN))
        session.rollback()


@pytest.mark.parametrize("backend", ["session", "sqlite_engine"])
def test_a_naive_datetime_is_refused_before_it_reaches_the_database(request, backend):
    fixture = request.getfixturevalue(backend)
    session = fixture if backend == "session" else Session(fixture)
    try:
        with pytest.raises(StatementError, match="naive datetime given to a UTC column"):
            _read_back(session, datetime(2026, 7, 1, 12, 30))
    finally:
        session.rollback()
        if backend != "session":
            session.close()


def test_utcnow_is_aware_utc():
    now = utcnow()
    assert now.utcoffset() == timedelta(0)
    assert abs(now - datetime.now(timezone.utc)) < timedelta(minutes=1)
