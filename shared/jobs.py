"""Jobs, users, tokens and notifications: the domain functions views and tasks call."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Connection, and_, bindparam, insert, inspect, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared import artifacts, lifecycle
from shared.models import ApiToken, Job, JobEvent, Notification, User, utcnow

TOKEN_PREFIX = "abt_"


class Conflict(Exception):
    """A request that contradicts the state it targets: answered 409 with `code`."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class BadCursor(ValueError):
    """A pagination cursor we did not issue."""


class NotFound(LookupError):
    """What a request names does not exist, or is not the caller's to see."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


# --- users and tokens ------------------------------------------------------------------


def get_or_create_user(session: Session, external_id: str) -> User:
    """The user with the application's own id `external_id`, created if unknown."""
    user = session.scalar(select(User).where(User.external_id == external_id))
    if user is not None:
        return user
    try:
        with session.begin_nested():
            user = User(external_id=external_id)
            session.add(user)
    except IntegrityError:  # created concurrently by another request or worker
        user = session.scalar(select(User).where(User.external_id == external_id))
    return user


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(session: Session, external_id: str, admin: bool = False, email=None, name=None) -> str:
    """Create the user if missing and a new API token for it; the token is returned once."""
    user = get_or_create_user(session, external_id)
    if admin:
        user.is_admin = True
    if email:
        user.email = email
    if name:
        user.name = name
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=user.id, token_hash=hash_token(token), prefix=token[:10]))
    return token


def user_for_token(session: Session, token_hash: str) -> User | None:
    # Looked up by its SHA-256 (hash_token): no comparison of secrets happens in Python.
    return session.scalar(
        select(User)
        .join(ApiToken, ApiToken.user_id == User.id)
        .where(ApiToken.token_hash == token_hash, ApiToken.revoked_at.is_(None))
    )


# --- representation --------------------------------------------------------------------


class Shown:
    """A job as CONTRACT §3 shows it, for shared.schemas.JobSchema to dump: the job (an
    object, or a row of visible_job) with its owner's application id, its artifacts and, in
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


def visible_job(db: Session | Connection, user: User, job_id: str):
    """The row of a job `user` may see (their own; any, for an admin: as visible_jobs) with
    its `owner`'s external id: one query, all a poll answered 304 needs (etag(row)).
    NotFound when there is no such job, or not for this user."""
    if user.is_admin:
        row = db.execute(_ANY_JOB, {"job_id": job_id}).first()
    else:
        row = db.execute(_OWN_JOB, {"job_id": job_id, "user_id": user.id}).first()
    if row is None:
        raise NotFound("no such job")
    return row


def detail(db: Session | Connection, row) -> Shown:
    """A job's row (visible_job) with its events and artifacts, read as plain rows."""
    events = db.execute(_EVENTS, {"job_id": row.id}).all()
    return Shown(row, row.owner, _artifacts(db, [row]).get(row.id, {}), events)


def etag(job: Job) -> str:
    """The job's entity tag (unquoted): changes whenever anything shown of the job does."""
    return hashlib.sha256(f"{job.id}:{job.revision}".encode()).hexdigest()[:32]


# --- cursors ---------------------------------------------------------------------------


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


def _page(session: Session, query, created_col, key_col, limit: int, cursor: str | None, key_type=str):
    """Newest first, keyset-paginated on (created_at, key)."""
    if cursor:
        stamp, key = decode_cursor(cursor, key_type)
        query = query.where(or_(created_col < stamp, and_(created_col == stamp, key_col < key)))
    rows = session.scalars(query.order_by(created_col.desc(), key_col.desc()).limit(limit + 1)).all()
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].created_at, getattr(rows[-1], key_col.key))
    return rows, next_cursor


# --- jobs ------------------------------------------------------------------------------


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


def visible_jobs(user: User):
    query = select(Job)
    return query if user.is_admin else query.where(Job.user_id == user.id)


def get_visible_job(session: Session, user: User, job_id: str, lock: bool = False) -> Job:
    """The job if `user` may see it (their own, or any for admins); NotFound otherwise."""
    query = visible_jobs(user).where(Job.id == job_id)
    if lock:
        query = query.with_for_update(of=Job)
    job = session.scalar(query)
    if job is None:
        raise NotFound("no such job")
    return job


def list_jobs(session: Session, user: User, status=None, job_type=None, limit=20, cursor=None):
    query = visible_jobs(user)
    if status:
        query = query.where(Job.status == status)
    if job_type:
        query = query.where(Job.job_type == job_type)
    return _page(session, query, Job.created_at, Job.id, limit, cursor)


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


# --- state changes ---------------------------------------------------------------------


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
    notifications = [_notify(session, job, change)] if change.notice else []
    return Applied(changed, notifications)


def _set_owner(session: Session, job: Job, external_user_id: str | None, changed: dict) -> None:
    user = get_or_create_user(session, external_user_id) if external_user_id else None
    user_id = user.id if user else None
    if job.user_id != user_id:
        changed["user_id"] = (job.user_id, user_id)
    job.user_id = user_id
    job.user = user
    if user is not None:
        # The notifications that waited without an owner are the new owner's.
        session.execute(
            update(Notification)
            .where(
                Notification.job_id == job.id,
                Notification.user_id.is_(None),
                Notification.type != lifecycle.JOB_UNASSIGNED,
            )
            .values(user_id=user.id)
        )


def _notify(session: Session, job: Job, change: lifecycle.Change) -> int:
    """The notification a change earns, with what a frontend shows: for an outcome, the
    sender's own words when it gave some (change.said), else what we know of the job."""
    if change.notice == lifecycle.JOB_UNASSIGNED:
        message = f"A {job.job_type} job ({job.id}) arrived from a sender without a user_id: assign it."
        return notify(session, job, lifecycle.JOB_UNASSIGNED, "Unassigned job", message, admins=True)
    said = change.said
    if change.notice == lifecycle.JOB_FAILED:
        reason = job.error if isinstance(job.error, str) else None
        if said:
            # The sender's words, with the cause when they do not give it already.
            message = said if reason is None or reason in said else f"{said}: {reason}"
        else:
            message = f"Your {job.job_type} job failed: " + (reason or "see the job's error")
        return notify(session, job, lifecycle.JOB_FAILED, "Job failed", message)
    produced = artifacts.summary(session, job.id)
    if "images_count" in produced:
        title, message = "Images ready", f"{_count(produced['images_count'], 'image')} generated."
    elif "chapter_count" in produced:
        title = "Book ready"
        message = f"“{produced['book_title']}” is ready: {_count(produced['chapter_count'], 'chapter')}."
    else:
        title, message = "Job succeeded", f"Your {job.job_type} job is done."
    return notify(session, job, lifecycle.JOB_SUCCEEDED, title, said or message, data=produced)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


# --- notifications ---------------------------------------------------------------------


def notify(session: Session, job: Job, type_: str, title: str, message: str, data=None, admins: bool = False) -> int:
    """Create a notification about `job` for its owner (for every admin with `admins`); its id."""
    return session.scalar(
        insert(Notification)
        .values(
            user_id=None if admins else job.user_id,
            type=type_,
            title=title,
            message=message,
            job_id=job.id,
            data={"job_type": job.job_type, "status": job.status, **(data or {})},
            created_at=utcnow(),
        )
        .returning(Notification.id)
    )


def visible_notifications(user: User):
    query = select(Notification)
    return query if user.is_admin else query.where(Notification.user_id == user.id)


def list_notifications(session: Session, user: User, unread=None, job_id=None, limit=20, cursor=None):
    query = visible_notifications(user)
    if unread is True:
        query = query.where(Notification.read_at.is_(None))
    elif unread is False:
        query = query.where(Notification.read_at.is_not(None))
    if job_id:
        query = query.where(Notification.job_id == job_id)
    return _page(session, query, Notification.created_at, Notification.id, limit, cursor, key_type=int)


# A notification id as we issue it: ASCII digits that fit a BIGINT. str.isdigit() also takes
# "²" (int() refuses it) and "٤٢" (int() reads it as 42).
NOTIFICATION_ID = re.compile(r"[0-9]{1,18}")


def mark_read(session: Session, user: User, notification_id: str) -> Notification:
    """The notification, read; NotFound unless it is one `user` sees."""
    n = None
    if NOTIFICATION_ID.fullmatch(notification_id):  # else not an id we issued: no query
        n = session.scalar(visible_notifications(user).where(Notification.id == int(notification_id)))
    if n is None:
        raise NotFound("no such notification")
    if n.read_at is None:
        n.read_at = utcnow()
    return n
