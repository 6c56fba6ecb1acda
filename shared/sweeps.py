"""The periodic sweeps of CONTRACT §7. Each is safe to run twice at once."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared import lifecycle
from shared.db import insert_ignoring_conflict
from shared.deliveries import notify_outcome
from shared.jobs import touch
from shared.models import Delivery, Heartbeat, Job, utcnow
from shared.settings import Settings

BATCH = 500


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


def time_out_stale_jobs(session: Session, settings: Settings) -> list[str]:
    """Fail dispatched or running jobs silent for JOB_STALE_AFTER seconds (0: off)."""
    if settings.job_stale_after <= 0:
        return []
    now = utcnow()
    cutoff = now - timedelta(seconds=settings.job_stale_after)
    stale = session.scalars(
        select(Job)
        .where(Job.status.in_((lifecycle.DISPATCHED, lifecycle.RUNNING)), Job.updated_at <= cutoff)
        .limit(BATCH)
        .with_for_update(skip_locked=True, of=Job)
    ).all()
    for job in stale:
        job.status = lifecycle.FAILED
        job.failed_by = "watchdog"
        job.error = "timed out"
        job.completed_at = now
        touch(job, now)
        notify_outcome(session, job)
    return [job.id for job in stale]


def beat(session: Session, name: str) -> None:
    """Record that the periodic task `name` ran now (the canary of /readyz and /metrics)."""
    now = utcnow()
    if not insert_ignoring_conflict(session, Heartbeat, {"name": name, "beat_at": now}, ["name"]):
        session.execute(update(Heartbeat).where(Heartbeat.name == name).values(beat_at=now))
