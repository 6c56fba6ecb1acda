"""Sender-facing webhooks (CONTRACT §4): verify, validate, record, enqueue, answer."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app

from ingress.body import lowercase_headers, raw_body, require_json_content_type
from ingress.errors import ApiError
from ingress.limits import enforce
from shared import deliveries
from shared.callbacks import ENDPOINTS, Endpoint, load
from shared.schemas import accepted_schema
from shared.signing import verify

log = logging.getLogger(__name__)
bp = Blueprint("hooks", __name__)


def receive(endpoint: Endpoint):
    settings = current_app.extensions["settings"]
    secrets = getattr(settings, endpoint.secrets_attr)
    if not secrets:
        raise ApiError(
            503, "not_configured",
            f"no secret is configured for {endpoint.path}; unsigned requests are never accepted",
            headers={"Retry-After": "60"},
        )
    require_json_content_type()
    body = raw_body()
    headers = lowercase_headers()
    verified = verify(
        secrets,
        headers,
        body,
        # Whole seconds, as the timestamps are: ± the tolerance exactly is still fresh.
        now=int(current_app.extensions["clock"]()),
        tolerance=settings.tolerance_seconds,
        allow_secret_header=endpoint.allow_secret_header and settings.webhook_allow_secret_header,
    )
    enforce("sender", endpoint.name, settings.rate_limit_sender)
    callback = load(endpoint, body)
    # Standard Webhooks: webhook-id, which is signed. HMAC: the id headers are not signed,
    # so the verified signature identifies the request too (a replay under another id is
    # a duplicate). X-Webhook-Secret signs nothing: its id headers are taken as they come.
    delivery_id = deliveries.delivery_id_for(headers, body)
    recorded = current_app.extensions["recorder"].record(
        deliveries.incoming(endpoint.name, delivery_id, callback, body, headers, verified.signature)
    )
    log.debug(
        "%s delivery %s for job %s accepted (%s%s)", endpoint.path, recorded.delivery_id, recorded.job_id,
        verified.scheme, ", duplicate" if recorded.duplicate else "",
    )
    return accepted_schema.dump(recorded)


def _register(endpoint: Endpoint) -> None:
    bp.add_url_rule(
        endpoint.path, endpoint=endpoint.name.replace(".", "_"), view_func=lambda: receive(endpoint), methods=["POST"]
    )


for _endpoint in ENDPOINTS.values():
    _register(_endpoint)
