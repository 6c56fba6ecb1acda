"""The periodic sweeps of CONTRACT §7. Each is safe to run twice at once."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import delete, select, tuple_, update
from sqlalchemy.orm import Session

from shared import lifecycle
from shared.db import insert_ignoring_conflict, make_engine, make_sessionmaker
from shared.jobs import change_job
from shared.models import Delivery, DeliverySignature, Heartbeat, Job, utcnow
from shared.settings import Settings

BATCH = 500
# Signatures deleted per statement (and transaction): short row locks, bounded undo.
SIGNATURE_BATCH = 1000
# A signature must be kept while a replay of its request could still pass the timestamp
# check: the timestamp was within the tolerance of our clock when the request was first
# seen and must be within it of our clock at the replay, so up to twice the tolerance
# later. The margin covers timestamps compared in whole seconds, a verified request
# waiting for the writer, and clocks that differ between the web's and a worker's machines.
SIGNATURE_MARGIN = 60


def unapplied_deliveries(session: Session, settings: Settings) -> list[int]:
    """Deliveries not applied `redeliver_after` seconds after their last enqueue; marks them re-enqueued."""
    now = utcnow()
    cutoff = now - timedelta(seconds=settings.redeliver_after)
    due = session.scalars(
        select(Delivery.id)
        .where(
            Delivery.applied_at.is_(None),
            Delivery.last_enqueued_at <= cutoff,
            Delivery.attempts < settings.max_delivery_attempts,
        )
        .order_by(Delivery.id)
        .limit(BATCH)
    ).all()
    if not due:
        return []
    # Conditional: the ones a concurrent sweep took first are not returned here.
    return sorted(session.scalars(
        update(Delivery.__table__)
        .where(Delivery.id.in_(due), Delivery.last_enqueued_at <= cutoff)
        .values(last_enqueued_at=now)
        .returning(Delivery.id)
    ).all())


def forget_signatures(session: Session, settings: Settings, now: datetime, limit: int = SIGNATURE_BATCH) -> int:
    """Delete up to `limit` kept signatures that no replay could pass the timestamp check
    with any more (shared.deliveries); how many were deleted."""
    cutoff = now - timedelta(seconds=2 * settings.tolerance_seconds + SIGNATURE_MARGIN)
    key = tuple_(DeliverySignature.endpoint, DeliverySignature.signature)
    # SKIP LOCKED: two sweeps at once delete different rows instead of waiting for each other.
    oldest = (
        select(DeliverySignature.endpoint, DeliverySignature.signature)
        .where(DeliverySignature.seen_at < cutoff)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return session.execute(delete(DeliverySignature.__table__).where(key.in_(oldest))).rowcount


def due_dispatches(session: Session) -> list[str]:
    """Pending jobs whose next attempt is due (new ones the broker lost, and retries)."""
    return list(
        session.scalars(
            select(Job.id)
            .where(Job.status == lifecycle.PENDING, Job.next_attempt_at <= utcnow())
            .order_by(Job.next_attempt_at)
            .limit(BATCH)
        ).all()
    )


def time_out_stale_jobs(session: Session, settings: Settings, now: datetime | None = None) -> list[str]:
    """Fail dispatched or running jobs silent for JOB_STALE_AFTER seconds (0: off)."""
    if settings.job_stale_after <= 0:
        return []
    now = now or utcnow()
    cutoff = now - timedelta(seconds=settings.job_stale_after)
    stale = session.scalars(
        select(Job)
        .where(Job.status.in_(lifecycle.WATCHED), Job.updated_at <= cutoff)
        .limit(BATCH)
        .with_for_update(skip_locked=True, of=Job)
    ).all()
    for job in stale:
        change_job(session, job, lifecycle.TimedOut(), now)
    return [job.id for job in stale]


# Rows of the heartbeats table: beat's own tick (workers.beat), the canary task beat
# schedules and a worker runs, and the base URL the web serves (ingress/gunicorn_conf.py).
BEAT, CANARY, WEB = "beat", "canary", "web"


def beat(session: Session, name: str, detail: str | None = None) -> None:
    """Record that `name` is alive now (with what it reports, for the web its base URL)."""
    now = utcnow()
    row = {"name": name, "beat_at": now, "detail": detail}
    if not insert_ignoring_conflict(session, Heartbeat, row, ["name"]):
        session.execute(update(Heartbeat).where(Heartbeat.name == name).values(beat_at=now, detail=detail))


def record_web_base_url(settings: Settings) -> None:
    """Record in the heartbeats row "web" the base URL this web serves (its public_base_url).

    Under a Procfile runner each process type gets its own PORT, so a worker without
    PUBLIC_BASE_URL cannot derive the web's URL from its own environment: it reads this row.
    """
    engine = make_engine(settings.database_url, settings.database_timeout)
    try:
        with make_sessionmaker(engine).begin() as session:
            beat(session, WEB, detail=settings.public_base_url)
    finally:
        # Called in gunicorn's master before it forks: no connection may outlive this.
        engine.dispose()


def heartbeat_ages(session: Session, names: tuple[str, ...]) -> dict[str, float | None]:
    """Seconds since each of `names` last beat; None for one that never did."""
    now = utcnow()
    rows = dict(session.execute(select(Heartbeat.name, Heartbeat.beat_at).where(Heartbeat.name.in_(names))).all())
    return {name: (now - rows[name]).total_seconds() if name in rows else None for name in names}


def web_base_url(session: Session) -> str | None:
    """The base URL the web recorded when it started, if a web ever did."""
    return session.scalar(select(Heartbeat.detail).where(Heartbeat.name == WEB))


def reachable_settings(settings: Settings, recorded: str | None) -> Settings:
    """`settings` whose callback URL reaches the web: PUBLIC_BASE_URL when set, else the
    base URL the web recorded (`recorded`), else this process's own default."""
    if not settings.public_base_url_is_default or not recorded:
        return settings
    return replace(settings, public_base_url=recorded)
