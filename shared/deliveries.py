"""Deliveries: recorded by the ingress before anything else, applied once by a worker."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared import artifacts, lifecycle
from shared.callbacks import ENDPOINTS, Callback, Endpoint, load
from shared.db import insert_ignoring_conflict
from shared.jobs import get_or_create_user, notify, touch
from shared.models import Delivery, Job, JobEvent, utcnow

log = logging.getLogger(__name__)

# The headers worth keeping with a delivery: what identifies and authenticates it.
KEPT_HEADERS = (
    "content-type",
    "user-agent",
    "x-timestamp",
    "x-delivery-id",
    "idempotency-key",
    "webhook-id",
    "webhook-timestamp",
)


def delivery_id_for(headers, body: bytes) -> str:
    """webhook-id, else X-Delivery-Id or Idempotency-Key, else the SHA-256 of the body."""
    for name in ("webhook-id", "x-delivery-id", "idempotency-key"):
        value = (headers.get(name) or "").strip()
        if value:
            return value[:255]
    return "sha256:" + hashlib.sha256(body).hexdigest()


@dataclass(frozen=True)
class Recorded:
    pk: int
    delivery_id: str
    job_id: str
    duplicate: bool


def record(
    session: Session, endpoint: str, delivery_id: str, callback: Callback, body: bytes, headers
) -> Recorded:
    """Record an accepted delivery, or find the one already recorded under its id."""
    now = utcnow()
    kept = {name: headers.get(name) for name in KEPT_HEADERS if headers.get(name) is not None}
    pk = insert_ignoring_conflict(
        session,
        Delivery,
        dict(
            endpoint=endpoint,
            delivery_id=delivery_id,
            job_id=callback.job_id,
            status=lifecycle.canonical(callback.word) or lifecycle.PENDING,
            body=body,
            headers=kept,
            received_at=now,
            last_enqueued_at=now,
            attempts=0,
            duplicates=0,
        ),
        ["endpoint", "delivery_id"],
        returning=Delivery.id,
    )
    if pk is not None:
        return Recorded(pk, delivery_id, callback.job_id, duplicate=False)
    row = session.execute(
        select(Delivery.id, Delivery.job_id).where(
            Delivery.endpoint == endpoint, Delivery.delivery_id == delivery_id
        )
    ).one()
    session.execute(
        update(Delivery).where(Delivery.id == row.id).values(duplicates=Delivery.duplicates + 1)
    )
    return Recorded(row.id, delivery_id, row.job_id, duplicate=True)


def begin_attempt(session: Session, pk: int, max_attempts: int) -> int | None:
    """Count one more attempt at applying a delivery; None when applied or given up.

    Committed on its own before the work, so that a delivery that kills its worker every
    time is not redelivered for ever (task_reject_on_worker_lost redelivers at once).
    """
    attempts = session.scalar(
        update(Delivery)
        .where(Delivery.id == pk, Delivery.applied_at.is_(None), Delivery.attempts < max_attempts)
        .values(attempts=Delivery.attempts + 1)
        .returning(Delivery.attempts)
    )
    return attempts


def record_failure(session: Session, pk: int, error: str) -> None:
    session.execute(update(Delivery).where(Delivery.id == pk).values(last_error=error[:2000]))


def apply(session: Session, pk: int) -> str:
    """Apply a recorded delivery to its job, exactly once. Returns what happened, for logs."""
    now = utcnow()
    # Claiming and applying share one transaction: either both commit or neither does.
    claimed = session.execute(
        update(Delivery)
        .where(Delivery.id == pk, Delivery.applied_at.is_(None))
        .values(applied_at=now, last_error=None)
    ).rowcount
    if not claimed:
        return "already applied"
    delivery = session.get(Delivery, pk)
    endpoint = ENDPOINTS[delivery.endpoint]
    callback = load(endpoint, delivery.body)
    delivery.apply_ms = max(0, int((now - delivery.received_at).total_seconds() * 1000))
    return apply_callback(session, endpoint, delivery.id, callback, now, received_at=delivery.received_at)


def _find_job(session: Session, job_id: str) -> Job | None:
    job = session.scalar(select(Job).where(Job.id == job_id).with_for_update(of=Job))
    if job is None:
        # A backend that answered our dispatch with its own id calls back with that id.
        job = session.scalar(
            select(Job).where(Job.external_id == job_id).order_by(Job.created_at).limit(1).with_for_update(of=Job)
        )
    return job


def _auto_create(session: Session, cb: Callback, job_type: str, now: datetime) -> Job:
    owner = get_or_create_user(session, cb.user_id) if cb.user_id else None
    created = insert_ignoring_conflict(
        session,
        Job,
        dict(
            id=cb.job_id,
            job_type=cb.job_type or job_type,
            # Work the sender already started: never dispatched by us, but watched.
            status=lifecycle.DISPATCHED,
            progress=0,
            params={},
            user_id=owner.id if owner else None,
            source="callback",
            attempts=0,
            revision=1,
            created_at=now,
            updated_at=now,
        ),
        ["id"],
    )
    job = session.scalar(select(Job).where(Job.id == cb.job_id).with_for_update(of=Job))
    if created:
        log.info("job %s auto-created from a callback (owner %s)", job.id, cb.user_id or "none")
        if owner is None:
            notify(
                session,
                job,
                "job_unassigned",
                "Unassigned job",
                f"A {job.job_type} job ({job.id}) arrived from a sender without a user_id: assign it.",
                user_id=None,
            )
    return job


def apply_callback(
    session: Session, endpoint: Endpoint, delivery_pk: int | None, cb: Callback, now: datetime,
    received_at: datetime | None = None,
) -> str:
    """Apply a sender's status report to its job (found, or auto-created) under a row lock.

    Workers may apply two deliveries out of order; the event carries the time the delivery
    was received, so the job's history reads in the order the sender sent it.
    """
    job = _find_job(session, cb.job_id) or _auto_create(session, cb, endpoint.job_type, now)
    if job.user_id is None and cb.user_id:
        job.user = get_or_create_user(session, cb.user_id)
        job.user_id = job.user.id
    transition = lifecycle.decide(job.status, job.failed_by, job.progress, cb.word, cb.progress)
    session.add(
        JobEvent(
            job_id=job.id,
            kind="callback",
            status=cb.word,
            progress=cb.progress,
            message=cb.message,
            data=cb.payload,
            delivery_pk=delivery_pk,
            created_at=received_at or now,
        )
    )
    if not transition.applies:
        if cb.artifacts and job.status == lifecycle.SUCCEEDED:
            # Succeeded without them before (say, through n8n's hook): keep what this brings.
            artifacts.store(session, job.id, cb.artifacts)
        touch(job, now)
        return f"job {job.id} is {job.status}: {cb.word!r} recorded as an event only"
    previous = job.status
    job.status = transition.status
    job.phase = cb.word
    job.progress = transition.progress
    job.next_attempt_at = None
    if job.status == lifecycle.SUCCEEDED:
        job.result = cb.result
        job.error = None
        job.failed_by = None
        job.completed_at = now
    elif job.status == lifecycle.FAILED:
        job.error = cb.error if cb.error is not None else (cb.message or "failed")
        job.failed_by = "sender"
        job.completed_at = now
    elif job.status == lifecycle.CANCELLED:
        job.completed_at = now
    if cb.artifacts and job.status == lifecycle.SUCCEEDED:
        artifacts.store(session, job.id, cb.artifacts)
    touch(job, now)
    if job.status != previous and job.status in (lifecycle.SUCCEEDED, lifecycle.FAILED):
        notify_outcome(session, job)
    return f"job {job.id}: {previous} -> {job.status} ({cb.word}, {job.progress}%)"


def notify_outcome(session: Session, job: Job) -> None:
    """The one notification of a transition into succeeded or failed, with what a frontend shows."""
    if job.status == lifecycle.FAILED:
        reason = job.error if isinstance(job.error, str) else "see the job's error"
        notify(session, job, "job_failed", "Job failed", f"Your {job.job_type} job failed: {reason}")
        return
    produced = artifacts.summary(session, job.id)
    if "images_count" in produced:
        count = produced["images_count"]
        title, message = "Images ready", f"{count} image{'s' if count != 1 else ''} generated."
    elif "chapter_count" in produced:
        title = "Book ready"
        message = f"“{produced['book_title']}” is ready: {produced['chapter_count']} chapters."
    else:
        title, message = "Job succeeded", f"Your {job.job_type} job is done."
    notify(session, job, "job_succeeded", title, message, data=produced)
