"""App-facing API (CONTRACT §3): jobs and notifications for frontends and the CRM."""

from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify, request, url_for

from ingress.auth import require_user
from ingress.body import idempotency_key, json_object, query
from ingress.db import reader, session
from ingress.errors import ApiError
from shared import jobs, notifications, schemas
from shared.models import Job
from shared.queue import DISPATCH_JOB, enqueue

bp = Blueprint("api", __name__, url_prefix="/api")


def commit_new(job: Job, was_created: bool) -> tuple[int, dict]:
    """Commit a job a POST made (or found: the first of its Idempotency-Key) and send it to
    dispatch; the answer's status and headers: 202 and its URL, 200 for the replay."""
    session().commit()
    if was_created:
        # After the commit that makes it valid; if the broker is down the sweep sends it.
        enqueue(DISPATCH_JOB, job_id=job.id)
    return (202 if was_created else 200), {"Location": url_for("api.get_job", job_id=job.id)}


def _job(job: Job) -> dict:
    return schemas.job_schema.dump(jobs.shown(session(), [job])[0])


@bp.post("/jobs")
@require_user
def create_job():
    data = json_object(schemas.job_create_schema)
    job, was_created = jobs.create_job(session(), g.user, data["job_type"], data["params"], idempotency_key())
    status, headers = commit_new(job, was_created)
    return _job(job), status, headers


@bp.get("/jobs")
@require_user
def list_jobs():
    rows, next_cursor = jobs.list_jobs(session(), g.user, **query(schemas.job_list_query_schema))
    return schemas.job_page_schema.dump({"items": jobs.shown(session(), rows), "next_cursor": next_cursor})


@bp.get("/jobs/<job_id>")
@require_user
def get_job(job_id: str):
    # Frontends poll with If-None-Match: the unchanged case is one query, the changed one two
    # (four for a job that succeeded with artifacts).
    job = jobs.job_to_show(reader(), g.user, job_id)
    tag = jobs.etag(job)
    if request.if_none_match.contains(tag):
        response = current_app.response_class(status=304)
    else:
        response = jsonify(schemas.job_detail_schema.dump(jobs.detail(reader(), job)))
    response.set_etag(tag)
    response.headers["Cache-Control"] = "no-cache"
    return response


def _change(job_id: str, change) -> Job:
    job = jobs.job_to_change(session(), g.user, job_id)
    change(session(), job)
    session().commit()
    return job


@bp.post("/jobs/<job_id>/retry")
@require_user
def retry_job(job_id: str):
    job = _change(job_id, jobs.retry_job)
    enqueue(DISPATCH_JOB, job_id=job.id)
    return _job(job), 202


@bp.post("/jobs/<job_id>/cancel")
@require_user
def cancel_job(job_id: str):
    return _job(_change(job_id, jobs.cancel_job)), 202


@bp.patch("/jobs/<job_id>")
@require_user
def assign_job(job_id: str):
    if not g.user.is_admin:
        raise ApiError(403, "forbidden", "only an admin assigns jobs")
    data = json_object(schemas.job_assign_schema)
    return _job(_change(job_id, lambda db, job: jobs.assign_job(db, job, data["user_id"])))


@bp.get("/notifications")
@require_user
def list_notifications():
    rows, next_cursor = notifications.list_notifications(session(), g.user, **query(schemas.notification_list_query_schema))
    return schemas.notification_page_schema.dump({"items": rows, "next_cursor": next_cursor})


@bp.post("/notifications/<notification_id>/read")
@require_user
def read_notification(notification_id: str):
    notification = notifications.mark_read(session(), g.user, notification_id)
    session().commit()
    return schemas.notification_schema.dump(notification)
