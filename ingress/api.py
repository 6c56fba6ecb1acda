"""App-facing API (CONTRACT §3): jobs and notifications for frontends and the CRM."""

from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify, request, url_for

from ingress.auth import require_user
from ingress.body import json_object, load
from ingress.db import reader, session
from ingress.errors import ApiError
from shared import jobs, schemas
from shared.queue import DISPATCH_JOB, enqueue

bp = Blueprint("api", __name__, url_prefix="/api")


def _not_found() -> ApiError:
    return ApiError(404, "not_found", "no such job")


def _job_or_404(job_id: str, lock: bool = False):
    job = jobs.get_visible_job(session(), g.user, job_id, lock=lock)
    if job is None:
        raise _not_found()
    return job


def _conflict(exc: jobs.Conflict) -> ApiError:
    return ApiError(409, exc.code, exc.message)


def _query(schema):
    # Repeated query keys are refused rather than silently reduced to the first.
    args = request.args.to_dict(flat=False)
    repeated = [key for key, values in args.items() if len(values) > 1]
    if repeated:
        raise ApiError(400, "validation_error", "a query parameter is repeated", {k: ["Given more than once."] for k in repeated})
    return load(schema, {key: values[0] for key, values in args.items()})


@bp.post("/jobs")
@require_user
def create_job():
    data = json_object(schemas.job_create_schema)
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key.strip()) <= 255:
        raise ApiError(400, "validation_error", "Idempotency-Key must be 1 to 255 characters")
    db = session()
    try:
        job, created = jobs.create_job(db, g.user, data["job_type"], data["params"], key.strip() if key else None)
    except jobs.Conflict as exc:
        raise _conflict(exc) from None
    db.commit()
    if created:
        # After the commit that makes it valid; if the broker is down the sweep sends it.
        enqueue(DISPATCH_JOB, job_id=job.id)
    response = jsonify(jobs.job_view(job))
    response.status_code = 202 if created else 200
    response.headers["Location"] = url_for("api.get_job", job_id=job.id)
    return response


@bp.get("/jobs")
@require_user
def list_jobs():
    query = _query(schemas.job_list_query_schema)
    try:
        rows, next_cursor = jobs.list_jobs(session(), g.user, **query)
    except jobs.BadCursor as exc:
        raise ApiError(400, "validation_error", str(exc), {"cursor": [str(exc)]}) from None
    return {"items": jobs.job_views(session(), rows), "next_cursor": next_cursor}


@bp.get("/jobs/<job_id>")
@require_user
def get_job(job_id: str):
    # Frontends poll with If-None-Match: the unchanged case is one query, the changed one two
    # (four for a job that succeeded with artifacts).
    job = jobs.visible_job(reader(), g.user, job_id)
    if job is None:
        raise _not_found()
    tag = jobs.etag(job)
    if request.if_none_match.contains(tag):
        response = current_app.response_class(status=304)
    else:
        response = jsonify(jobs.job_detail(reader(), job))
    response.set_etag(tag)
    response.headers["Cache-Control"] = "no-cache"
    return response


def _change(job_id: str, change):
    db = session()
    job = _job_or_404(job_id, lock=True)
    try:
        change(db, job)
    except jobs.Conflict as exc:
        raise _conflict(exc) from None
    db.commit()
    return job


@bp.post("/jobs/<job_id>/retry")
@require_user
def retry_job(job_id: str):
    job = _change(job_id, jobs.retry_job)
    enqueue(DISPATCH_JOB, job_id=job.id)
    return jsonify(jobs.job_view(job)), 202


@bp.post("/jobs/<job_id>/cancel")
@require_user
def cancel_job(job_id: str):
    job = _change(job_id, jobs.cancel_job)
    return jsonify(jobs.job_view(job)), 202


@bp.patch("/jobs/<job_id>")
@require_user
def assign_job(job_id: str):
    if not g.user.is_admin:
        raise ApiError(403, "forbidden", "only an admin assigns jobs")
    data = json_object(schemas.job_assign_schema)
    job = _change(job_id, lambda db, job: jobs.assign_job(db, job, data["user_id"]))
    return jsonify(jobs.job_views(session(), [job])[0]), 200


@bp.get("/notifications")
@require_user
def list_notifications():
    query = _query(schemas.notification_list_query_schema)
    try:
        rows, next_cursor = jobs.list_notifications(session(), g.user, **query)
    except jobs.BadCursor as exc:
        raise ApiError(400, "validation_error", str(exc), {"cursor": [str(exc)]}) from None
    return {"items": [jobs.notification_view(n) for n in rows], "next_cursor": next_cursor}


@bp.post("/notifications/<notification_id>/read")
@require_user
def read_notification(notification_id: str):
    db = session()
    notification = jobs.mark_read(db, g.user, notification_id)
    if notification is None:
        raise ApiError(404, "not_found", "no such notification")
    db.commit()
    return jsonify(jobs.notification_view(notification))
