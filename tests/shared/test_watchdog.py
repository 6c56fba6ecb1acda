"""The watchdog (shared.sweeps.time_out_stale_jobs, CONTRACT §7): a dispatched or running job
that hears nothing for JOB_STALE_AFTER seconds fails with "timed out", its owner is told
once, and a later `succeeded` from the sender still wins. Time is injected: the job's last
word is given a moment long before anything else in the database, and the sweep its `now`."""

import json
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from shared import accounts, deliveries, jobs, lifecycle
from shared.callbacks import ENDPOINTS
from shared.models import Notification
from shared.sweeps import time_out_stale_jobs

HOOK = next(e for e in ENDPOINTS.values() if e.path == "/api/n8n/hooks/job-status")
STALE = 3600
LAST_WORD = datetime(2001, 1, 1, tzinfo=timezone.utc)  # older than every other job of the run
SILENT_ENOUGH = LAST_WORD + timedelta(seconds=STALE)
SECOND = timedelta(seconds=1)

# How a job came to be in each state, heard from last at LAST_WORD.
LAST_WORDS = {
    "dispatched": [lifecycle.DispatchAccepted()],
    "running": [lifecycle.DispatchAccepted(), lifecycle.Reported("generating", 40)],
    "pending": [lifecycle.DispatchRetrying(LAST_WORD + timedelta(hours=2))],
    "succeeded": [lifecycle.DispatchAccepted(), lifecycle.Reported("completed")],
    "failed": [lifecycle.DispatchAccepted(), lifecycle.Reported("failed", error="boom")],
    "cancelled": [lifecycle.Cancel()],
}


@pytest.fixture
def watchdog(settings):
    def sweep(session, now, stale_after=STALE):
        return time_out_stale_jobs(session, replace(settings, job_stale_after=stale_after), now=now)

    return sweep


def job_in(session, status: str):
    owner = accounts.get_or_create_user(session, f"watched-{uuid.uuid4().hex[:8]}")
    job, _ = jobs.create_job(session, owner, "cover_letter", {})
    for happening in LAST_WORDS[status]:
        jobs.change_job(session, job, happening, LAST_WORD)
    session.flush()
    assert job.status == status
    return job


def notifications(session, job):
    return session.execute(
        select(Notification.type, Notification.message, Notification.user_id)
        .where(Notification.job_id == job.id).order_by(Notification.id)
    ).all()


@pytest.mark.parametrize("status, progress", [("dispatched", 0), ("running", 40)])
def test_a_silent_job_times_out_and_its_owner_is_told_once(session, watchdog, status, progress):
    job = job_in(session, status)
    assert watchdog(session, SILENT_ENOUGH - SECOND) == []
    assert job.status == status

    assert watchdog(session, SILENT_ENOUGH) == [job.id]
    assert (job.status, job.failed_by, job.error, job.progress, job.completed_at, job.updated_at) == (
        "failed", "watchdog", "timed out", progress, SILENT_ENOUGH, SILENT_ENOUGH,
    )
    assert notifications(session, job) == [("job_failed", "Your cover_letter job failed: timed out", job.user_id)]

    assert watchdog(session, SILENT_ENOUGH + timedelta(days=1)) == []  # terminal stays terminal
    assert len(notifications(session, job)) == 1


def test_the_senders_late_success_still_wins(session, watchdog):
    job = job_in(session, "running")
    assert watchdog(session, SILENT_ENOUGH) == [job.id]
    body = {"job_id": job.id, "status": "succeeded", "result": {"text": "done after all"}}
    [recorded] = deliveries.record_many(session.connection(), [
        deliveries.Incoming(HOOK.name, f"late-{uuid.uuid4()}", job.id, "succeeded", json.dumps(body).encode(), {})
    ])
    deliveries.apply(session, [recorded.pk], max_attempts=10)
    session.refresh(job)
    assert (job.status, job.progress, job.result, job.error, job.failed_by) == (
        "succeeded", 100, {"text": "done after all"}, None, None,
    )
    assert [row.type for row in notifications(session, job)] == ["job_failed", "job_succeeded"]


@pytest.mark.parametrize("status", ["pending", "succeeded", "failed", "cancelled"])
def test_only_dispatched_and_running_jobs_are_watched(session, watchdog, status):
    job = job_in(session, status)
    before = (job.status, job.revision, len(notifications(session, job)))
    assert watchdog(session, SILENT_ENOUGH + timedelta(days=365)) == []
    assert (job.status, job.revision, len(notifications(session, job))) == before


def test_job_stale_after_zero_turns_the_watchdog_off(session, watchdog):
    job = job_in(session, "dispatched")
    assert watchdog(session, SILENT_ENOUGH + timedelta(days=365), stale_after=0) == []
    assert job.status == "dispatched"
