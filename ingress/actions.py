"""POST /api/actions (CONTRACT §5): a CRM action becomes a job routed to its n8n workflow."""

from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify, request, url_for

from ingress.auth import require_user
from ingress.body import json_object
from ingress.db import session
from ingress.errors import ApiError
from shared import actions, jobs
from shared.queue import DISPATCH_JOB, enqueue

bp = Blueprint("actions", __name__, url_prefix="/api")


@bp.post("/actions")
@require_user
def create_action():
    action = actions.normalise(json_object(actions.action_schema), g.user.external_id)
    route = current_app.extensions["action_routes"].route_for(action["actionType"])
    # Without N8N_BASE_URL a route name is kept as is: the dispatch resolves it, or fails the
    # job naming the variable, as for any job, and a retry once it is set goes through.
    url = route.url(current_app.extensions["settings"].n8n_base_url) or route.route
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key.strip()) <= 255:
        raise ApiError(400, "validation_error", "Idempotency-Key must be 1 to 255 characters")
    db = session()
    owner = g.user
    if g.user.is_admin:
        # Only an admin (the CRM's own service token) acts for another user; anyone else's
        # decidePar is data for n8n, or any user could make jobs in another's name.
        owner = actions.decider(db, action["decidePar"]) or g.user
    try:
        job, created = jobs.create_job(
            db, owner, actions.JOB_TYPE, action, key.strip() if key else None,
            source=actions.JOB_SOURCE, dispatch_url=url,
        )
    except jobs.Conflict as exc:
        raise ApiError(409, exc.code, exc.message) from None
    db.commit()
    if created:
        # After the commit that makes it valid; if the broker is down the sweep sends it.
        enqueue(DISPATCH_JOB, job_id=job.id)
    response = jsonify({
        "id": job.id,
        "status": job.status,
        "route": route.route,
        "action_type": action["actionType"],
        "known_action": actions.is_known(action["actionType"]),
    })
    response.status_code = 202 if created else 200
    response.headers["Location"] = url_for("api.get_job", job_id=job.id)
    return response
