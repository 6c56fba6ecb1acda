"""shared.sweeps.forget_signatures: a signature kept against replays is deleted once a replay
of its request would fail the timestamp check anyway, never before; in batches, and two
sweeps at once take different rows. On PostgreSQL and SQLite, with `now` given."""

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import delete, insert, select, text

from shared import sweeps
from shared.db import make_sessionmaker
from shared.models import DeliverySignature
from shared.settings import Settings

SIGNATURES = DeliverySignature.__table__
SETTINGS = Settings(database_url="sqlite://", broker_url="memory://", tolerance_seconds=300)
# Far from the clock of the run: the signatures the other tests keep are not stale at this time.
NOW = datetime(2001, 1, 1, tzinfo=timezone.utc)
# As long as a replay's timestamp may pass the check after the request was first seen.
WINDOW = timedelta(seconds=2 * 300 + sweeps.SIGNATURE_MARGIN)


def sessions(engine):
    """A sessionmaker on committed tables; what a test keeps there is deleted after it."""
    sessionmaker = make_sessionmaker(engine)
    sessionmaker.endpoint = f"sweep-{uuid.uuid4().hex[:8]}"
    yield sessionmaker
    with sessionmaker.begin() as session:
        session.execute(delete(SIGNATURES).where(SIGNATURES.c.endpoint == sessionmaker.endpoint))


@pytest.fixture(params=["postgresql", "sqlite"])
def db(request):
    yield from sessions(request.getfixturevalue("engine" if request.param == "postgresql" else "sqlite_engine"))


@pytest.fixture
def pg_db(engine):
    yield from sessions(engine)


def keep(db, *seen_at: datetime) -> list[str]:
    """Signatures seen at these times, as the ingress keeps them; their hex."""
    rows = [dict(endpoint=db.endpoint, signature=uuid.uuid4().hex * 2, delivery_id=f"d-{uuid.uuid4()}", seen_at=at)
            for at in seen_at]
    with db.begin() as session:
        session.execute(insert(SIGNATURES), rows)
    return [row["signature"] for row in rows]


def kept(db) -> set[str]:
    with db() as session:
        return set(session.scalars(select(SIGNATURES.c.signature).where(SIGNATURES.c.endpoint == db.endpoint)))


def forget(db, limit=sweeps.SIGNATURE_BATCH) -> int:
    with db.begin() as session:
        return sweeps.forget_signatures(session, SETTINGS, NOW, limit)


def test_a_signature_is_kept_while_a_replay_could_pass_the_timestamp_check(db):
    needed = keep(db, NOW - WINDOW, NOW - WINDOW + timedelta(seconds=1), NOW - timedelta(seconds=300), NOW)
    stale = keep(db, NOW - WINDOW - timedelta(seconds=1), NOW - timedelta(days=30))
    assert forget(db) == 2
    assert kept(db) == set(needed)
    assert kept(db).isdisjoint(stale)
    assert forget(db) == 0, "a second run finds nothing more"


def test_signatures_are_forgotten_in_batches(db):
    keep(db, *[NOW - WINDOW - timedelta(minutes=n + 1) for n in range(5)])
    assert [forget(db, limit=2) for _ in range(4)] == [2, 2, 1, 0]
    assert kept(db) == set()


def test_two_sweeps_at_once_delete_different_signatures_without_waiting(pg_db):
    """PostgreSQL (SQLite runs one write transaction at a time)."""
    db = pg_db
    keep(db, *[NOW - WINDOW - timedelta(minutes=n + 1) for n in range(5)])
    with db.begin() as first:
        assert sweeps.forget_signatures(first, SETTINGS, NOW, limit=2) == 2
        with db.begin() as second:
            # Waiting for the first sweep's rows would be an error here, not a hang.
            second.execute(text("SET LOCAL lock_timeout = '5s'"))
            assert sweeps.forget_signatures(second, SETTINGS, NOW) == 3
    assert kept(db) == set()
