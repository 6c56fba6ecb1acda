"""POST /api/actions (CONTRACT §5): a CRM action becomes a job routed to its n8n workflow."""

from __future__ import annotations

from flask import Blueprint, current_app, g

from ingress.api import commit_new
from ingress.auth import require_user
from ingress.body import idempotency_key, json_object
from ingress.db import session
from shared import actions, jobs

bp = Blueprint("actions", __name__, url_prefix="/api")


@bp.post("/actions")
@require_user
def create_action():
    action = actions.normalise(json_object(actions.action_schema), g.user.external_id)
    route = current_app.extensions["action_routes"].route_for(action["actionType"])
    # Without N8N_BASE_URL a route name is kept as is: the dispatch resolves it, or fails the
    # job naming the variable, as for any job, and a retry once it is set goes through.
    url = route.url(current_app.extensions["settings"].n8n_base_url) or route.route
    key = idempotency_key()
    owner = g.user
    if g.user.is_admin:
        # Only an admin (the CRM's own service token) acts for another user; anyone else's
        # decidePar is data for n8n, or any user could make jobs in another's name.
        owner = actions.decider(session(), action["decidePar"]) or g.user
    job, was_created = jobs.create_job(
        session(), owner, actions.JOB_TYPE, action, key, source=actions.JOB_SOURCE, dispatch_url=url
    )
    status, headers = commit_new(job, was_created)
    return actions.accepted_schema.dump({
        "id": job.id, "status": job.status, "route": route.route, "action_type": action["actionType"],
        "known_action": actions.is_known(action["actionType"]),
    }), status, headers
