"""Jobs: their creation, the one writer of their state (apply_change), and the readers that
show them: a poll's plain row, a locked job to change, a page."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared import artifacts, lifecycle, notifications
from shared.accounts import get_or_create_user
from shared.errors import Conflict, NotFound
from shared.models import Job, JobEvent, User, utcnow
from shared.paging import page


# --- readers and representation: a poll's row, a job to change, a page -----------------


class Shown:
    """A job as CONTRACT §3 shows it, for shared.schemas.JobSchema to dump: the job (an
    object, or a row of job_to_show) with its owner's application id, its artifacts and, in
    detail, its events."""

    __slots__ = ("job", "owner", "artifacts", "events")

    def __init__(self, job, owner: str | None, artifacts: dict, events=()):
        self.job, self.owner, self.artifacts, self.events = job, owner, artifacts, events

    def __getattr__(self, name: str):
        return getattr(self.job, name)


def shown(db: Session, jobs: list[Job]) -> list[Shown]:
    """Jobs with their owners (loaded with them) and artifacts (read in a few queries)."""
    produced = _artifacts(db, jobs)
    return [Shown(job, job.user.external_id if job.user else None, produced.get(job.id, {})) for job in jobs]


def _artifacts(db: Session | Connection, jobs) -> dict[str, dict]:
    """The artifacts of `jobs` (objects or rows) by job id.

    Artifacts are stored with a success, and a success is final (shared/lifecycle.py): only
    the jobs that succeeded can have any, so only theirs are looked for (what a poll costs).
    """
    return artifacts.for_jobs(db, [job.id for job in jobs if job.status == lifecycle.SUCCEEDED])


# A frontend's poll, built once (no expression to build and hash per request) and run on
# an autocommit connection: each read is its one round trip, no BEGIN, no ROLLBACK.
_JOBS = Job.__table__
_ANY_JOB = (
    select(_JOBS, User.external_id.label("owner"))
    .outerjoin(User, User.id == _JOBS.c.user_id)
    .where(_JOBS.c.id == bindparam("job_id"))
)
_OWN_JOB = _ANY_JOB.where(_JOBS.c.user_id == bindparam("user_id"))
_EVENTS = (
    select(JobEvent.__table__)
    .where(JobEvent.job_id == bindparam("job_id"))
    .order_by(JobEvent.created_at, JobEvent.id)
)


def job_to_show(db: Session | Connection, user: User, job_id: str):
    """The row of a job `user` sees (their own; any, for an admin: as _visible) with its
    `owner`'s external id: one query, all a poll answered 304 needs (etag(row)). NotFound
    when there is no such job, or not for this user."""
    if user.is_admin:
        row = db.execute(_ANY_JOB, {"job_id": job_id}).first()
    else:
        row = db.execute(_OWN_JOB, {"job_id": job_id, "user_id": user.id}).first()
    if row is None:
        raise NotFound("no such job")
    return row


def _visible(user: User):
    """The jobs `user` sees: their own; every one, for an admin."""
    query = select(Job)
    return query if user.is_admin else query.where(Job.user_id == user.id)


def job_to_change(session: Session, user: User, job_id: str) -> Job:
    """A job `user` sees, locked (FOR UPDATE) until the session ends, for change_job;
    NotFound otherwise."""
    job = session.scalar(_visible(user).where(Job.id == job_id).with_for_update(of=Job))
    if job is None:
        raise NotFound("no such job")
    return job


def list_jobs(session: Session, user: User, status=None, job_type=None, limit=20, cursor=None):
    """A page of the jobs `user` sees, newest first, and the next page's cursor."""
    query = _visible(user)
    if status:
        query = query.where(Job.status == status)
    if job_type:
        query = query.where(Job.job_type == job_type)
    return page(session, query, Job.created_at, Job.id, limit, cursor)


def detail(db: Session | Connection, row) -> Shown:
    """A job's row (job_to_show) with its events and artifacts, read as plain rows."""
    events = db.execute(_EVENTS, {"job_id": row.id}).all()
    return Shown(row, row.owner, _artifacts(db, [row]).get(row.id, {}), events)


def etag(job: Job) -> str:
    """The job's entity tag (unquoted): changes whenever anything shown of the job does."""
    return hashlib.sha256(f"{job.id}:{job.revision}".encode()).hexdigest()[:32]


# --- creation and changes ----------------------------------------------------------


def new_job_id() -> str:
    return str(uuid.uuid4())


def request_fingerprint(job_type: str, params: dict) -> str:
    canonical = json.dumps({"job_type": job_type, "params": params}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def create_job(
    session: Session,
    user: User,
    job_type: str,
    params: dict,
    idempotency_key: str | None = None,
    source: str = "api",
    dispatch_url: str | None = None,
) -> tuple[Job, bool]:
    """Create a pending job due for dispatch now; returns (job, created).

    With an idempotency key, the same key from the same user returns the first job, and a
    different body under that key raises Conflict(idempotency_conflict).
    """
    fingerprint = request_fingerprint(job_type, params)
    if idempotency_key is not None:
        existing = _job_for_key(session, user, idempotency_key)
        if existing is not None:
            return _same_request(existing, fingerprint), False
    now = utcnow()
    job = Job(
        id=new_job_id(),
        job_type=job_type,
        params=params,
        user_id=user.id,
        source=source,
        dispatch_url=dispatch_url,
        idempotency_key=idempotency_key,
        request_hash=fingerprint,
        created_at=now,
    )
    try:
        with session.begin_nested():
            apply_change(session, job, lifecycle.created(source, owned=True, now=now))
    except IntegrityError:
        # The same key raced us in another request; its job is the answer.
        existing = _job_for_key(session, user, idempotency_key)
        if existing is None:
            raise
        return _same_request(existing, fingerprint), False
    job.user = user
    return job, True


def _job_for_key(session: Session, user: User, key: str | None) -> Job | None:
    return session.scalar(select(Job).where(Job.user_id == user.id, Job.idempotency_key == key))


def _same_request(job: Job, fingerprint: str) -> Job:
    if job.request_hash != fingerprint:
        raise Conflict("idempotency_conflict", "this Idempotency-Key was used with a different body")
    return job


def cancel_job(session: Session, job: Job) -> Job:
    change_job(session, job, lifecycle.Cancel())
    return job


def retry_job(session: Session, job: Job) -> Job:
    change_job(session, job, lifecycle.Retry())
    return job


def assign_job(session: Session, job: Job, external_user_id: str | None) -> Job:
    """Give a job to a user (created if unknown); its unowned notifications go along."""
    change_job(session, job, lifecycle.Assign(external_user_id))
    return job


@dataclass(frozen=True)
class Applied:
    """What one change did to a job: each field that took another value, as (before, after)
    (`user_id` for the owner, `revision` always), and the ids of the notifications it made."""

    changed: dict[str, tuple[Any, Any]]
    notifications: list[int]


def change_job(session: Session, job: Job, happening, now: datetime | None = None) -> Applied:
    """Apply what `happening` (shared.lifecycle) does to `job`, locked by the caller;
    Conflict(code) when the job's state refuses it."""
    change = lifecycle.decide(lifecycle.State.of(job), happening, now or utcnow())
    if isinstance(change, lifecycle.Refusal):
        raise Conflict(change.code, change.message)
    return apply_change(session, job, change)


def apply_change(session: Session, job: Job, change: lifecycle.Change) -> Applied:
    """Write `change` to `job`: the one place where a job's state changes.

    Every change of every job goes through here (creation, callbacks, dispatch outcomes, the
    watchdog, cancel, retry, assign): its fields, its owner, its revision (the ETag), and the
    notification it earns, made once the job is as it says. What it did is returned, for
    whoever must hear of it (a frontend's live updates, an application's webhooks). A new
    job (not yet in the session) is inserted.
    """
    now = change.at or utcnow()
    fields = dict(change.fields)
    changed = {name: (getattr(job, name), value) for name, value in fields.items() if getattr(job, name) != value}
    # The one write of a job's status in the code, spelled out so that it can be found.
    job.status = fields.pop("status", job.status)
    for name, value in fields.items():
        setattr(job, name, value)
    if change.owner is not lifecycle.KEEP:
        _set_owner(session, job, change.owner, changed)
    job.updated_at = now
    changed["revision"] = (job.revision, (job.revision or 0) + 1)
    job.revision = changed["revision"][1]
    if inspect(job).transient:
        session.add(job)
        session.flush()  # the row exists before anything refers to it
    made = [notifications.for_change(session, job, change)] if change.notice else []
    return Applied(changed, made)


def _set_owner(session: Session, job: Job, external_user_id: str | None, changed: dict) -> None:
    user = get_or_create_user(session, external_user_id) if external_user_id else None
    user_id = user.id if user else None
    if job.user_id != user_id:
        changed["user_id"] = (job.user_id, user_id)
    job.user_id = user_id
    job.user = user
    if user is not None:
        notifications.hand_over(session, job, user)
