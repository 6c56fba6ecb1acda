"""shared.jobs.apply_change, the one writer of a job's state: it writes a lifecycle Change,
moves the revision (the ETag) on every change, makes the notification the change earns,
and returns what it changed."""

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from shared import accounts, deliveries, jobs, lifecycle
from shared.callbacks import ENDPOINTS
from shared.errors import Conflict
from shared.models import Job, Notification, User

HOOK = next(e for e in ENDPOINTS.values() if e.path == "/api/n8n/hooks/job-status")
NOW = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)


def owned_job(session) -> Job:
    owner = accounts.get_or_create_user(session, f"owner-{uuid.uuid4().hex[:8]}")
    job, _ = jobs.create_job(session, owner, "cover_letter", {})
    return job


def notifications(session, job_id):
    return session.execute(
        select(Notification.id, Notification.type, Notification.user_id)
        .where(Notification.job_id == job_id).order_by(Notification.id)
    ).all()


def test_a_new_job_is_written_by_the_applier(session):
    job = owned_job(session)
    assert (job.status, job.progress, job.attempts, job.revision) == ("pending", 0, 0, 1)
    assert job.next_attempt_at == job.updated_at == job.created_at  # due for dispatch at once
    assert session.get(Job, job.id) is job


def test_a_change_returns_what_it_changed_and_moves_the_revision(session):
    job = owned_job(session)
    due = job.next_attempt_at
    applied = jobs.change_job(session, job, lifecycle.Cancel(), NOW)
    assert applied.changed == {
        "status": ("pending", "cancelled"), "completed_at": (None, NOW), "next_attempt_at": (due, None),
        "revision": (1, 2),
    }
    assert (applied.notifications, job.updated_at) == ([], NOW)


def test_a_happening_recorded_only_moves_the_revision_alone(session):
    job = owned_job(session)
    jobs.change_job(session, job, lifecycle.Cancel(), NOW)
    etag = jobs.etag(job)
    applied = jobs.change_job(session, job, lifecycle.Reported("running", 50), NOW + timedelta(seconds=1))
    assert applied.changed == {"revision": (2, 3)}
    assert (job.status, job.progress) == ("cancelled", 0) and jobs.etag(job) != etag


def test_a_refused_happening_changes_nothing(session):
    job = owned_job(session)
    with pytest.raises(Conflict) as refused:
        jobs.change_job(session, job, lifecycle.Retry(), NOW)
    assert (refused.value.code, job.status, job.revision) == ("not_retryable", "pending", 1)


def test_each_transition_into_an_outcome_notifies_the_owner_once(session):
    job = owned_job(session)
    jobs.change_job(session, job, lifecycle.DispatchAccepted(), NOW)
    failed = jobs.change_job(session, job, lifecycle.TimedOut(), NOW)
    succeeded = jobs.change_job(session, job, lifecycle.Reported("completed", message="Lettre prête"), NOW)
    again = jobs.change_job(session, job, lifecycle.Reported("completed"), NOW)
    assert again.notifications == []
    rows = notifications(session, job.id)
    assert rows == [(failed.notifications[0], "job_failed", job.user_id),
                    (succeeded.notifications[0], "job_succeeded", job.user_id)]
    assert session.scalar(select(Notification.message).where(Notification.id == rows[1].id)) == "Lettre prête"


def record(session, body: dict) -> int:
    incoming = deliveries.Incoming(HOOK.name, f"owner-{uuid.uuid4()}", body["job_id"], "running",
                                   json.dumps(body).encode(), {})
    [recorded] = deliveries.record_many(session.connection(), [incoming])
    return recorded.pk


@pytest.mark.parametrize("assigned_by", ["PATCH", "callback"])
def test_the_notifications_of_an_unassigned_job_go_to_the_owner_it_gets(session, assigned_by):
    """An auto-created job without a user_id: admins are told, its failure waits without an
    owner; the owner a PATCH or a later callback gives it gets that failure."""
    job_id = f"backend-{uuid.uuid4()}"
    pks = [record(session, {"job_id": job_id, "status": "failed", "error": "quota"})]
    deliveries.apply(session, pks, max_attempts=10)
    assert [(row.type, row.user_id) for row in notifications(session, job_id)] == [
        ("job_unassigned", None), ("job_failed", None),
    ]
    external_id = f"user-{uuid.uuid4().hex[:8]}"
    if assigned_by == "PATCH":
        jobs.assign_job(session, session.get(Job, job_id), external_id)
    else:
        deliveries.apply(session, [record(session, {"job_id": job_id, "status": "failed", "user_id": external_id})],
                         max_attempts=10)
    owner = session.scalar(select(User.id).where(User.external_id == external_id))
    assert session.get(Job, job_id).user_id == owner
    assert [(row.type, row.user_id) for row in notifications(session, job_id)] == [
        ("job_unassigned", None), ("job_failed", owner),
    ]
