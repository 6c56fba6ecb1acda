"""Notifications: the one a job's change earns, a user's pages of them, marking one read."""

from __future__ import annotations

import re

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from shared import artifacts, lifecycle
from shared.errors import NotFound
from shared.models import Job, Notification, User, utcnow
from shared.paging import page


def for_change(session: Session, job: Job, change: lifecycle.Change) -> int:
    """The notification a change earns (change.notice), with what a frontend shows: for an
    outcome, the sender's own words when it gave some (change.said), else what we know of
    the job. Its id."""
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


def hand_over(session: Session, job: Job, user: User) -> None:
    """Give `user`, the job's new owner, the notifications about it that waited without one
    (all but the admins' call to assign it)."""
    session.execute(
        update(Notification)
        .where(
            Notification.job_id == job.id,
            Notification.user_id.is_(None),
            Notification.type != lifecycle.JOB_UNASSIGNED,
        )
        .values(user_id=user.id)
    )


def _visible(user: User):
    """The notifications `user` sees: their own; every one, for an admin."""
    query = select(Notification)
    return query if user.is_admin else query.where(Notification.user_id == user.id)


def list_notifications(session: Session, user: User, unread=None, job_id=None, limit=20, cursor=None):
    """A page of the notifications `user` sees, newest first, and the next page's cursor."""
    query = _visible(user)
    if unread is True:
        query = query.where(Notification.read_at.is_(None))
    elif unread is False:
        query = query.where(Notification.read_at.is_not(None))
    if job_id:
        query = query.where(Notification.job_id == job_id)
    return page(session, query, Notification.created_at, Notification.id, limit, cursor, key_type=int)


# A notification id as we issue it: ASCII digits that fit a BIGINT. str.isdigit() also takes
# "²" (int() refuses it) and "٤٢" (int() reads it as 42).
NOTIFICATION_ID = re.compile(r"[0-9]{1,18}")


def mark_read(session: Session, user: User, notification_id: str) -> Notification:
    """The notification, read; NotFound unless it is one `user` sees."""
    n = None
    if NOTIFICATION_ID.fullmatch(notification_id):  # else not an id we issued: no query
        n = session.scalar(_visible(user).where(Notification.id == int(notification_id)))
    if n is None:
        raise NotFound("no such notification")
    if n.read_at is None:
        n.read_at = utcnow()
    return n
