"""workers.sweeps.forget_signatures, scheduled by beat: every stale signature kept against
replays is deleted in one run, a batch per transaction."""

import uuid
from datetime import datetime, timezone

from sqlalchemy import delete, insert, select

from celeryconfig import beat_schedule
from shared import sweeps
from shared.db import make_sessionmaker
from shared.models import DeliverySignature

SIGNATURES = DeliverySignature.__table__


def test_beat_forgets_every_stale_signature_a_batch_at_a_time(engine, monkeypatch):
    from workers.sweeps import forget_signatures

    assert "workers.sweeps.forget_signatures" in {entry["task"] for entry in beat_schedule.values()}
    db = make_sessionmaker(engine)
    endpoint = f"sweep-{uuid.uuid4().hex[:8]}"
    long_ago = datetime(2000, 1, 1, tzinfo=timezone.utc)
    with db.begin() as session:
        session.execute(insert(SIGNATURES), [
            dict(endpoint=endpoint, signature=uuid.uuid4().hex * 2, delivery_id=f"d-{n}", seen_at=long_ago)
            for n in range(5)
        ])
    monkeypatch.setattr(sweeps, "SIGNATURE_BATCH", 2)  # five rows: three batches
    try:
        assert forget_signatures.run() >= 5
    finally:
        with db.begin() as session:
            left = session.scalars(select(SIGNATURES.c.signature).where(SIGNATURES.c.endpoint == endpoint)).all()
            session.execute(delete(SIGNATURES).where(SIGNATURES.c.endpoint == endpoint))
    assert left == []
