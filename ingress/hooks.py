"""Sender-facing webhooks (CONTRACT §4): verify, validate, record, enqueue, answer."""

from __future__ import annotations

import logging
import time

from flask import Blueprint, current_app

from ingress.body import lowercase_headers, raw_body, require_json_content_type
from ingress.errors import ApiError, unavailable
from ingress.limits import enforce
from ingress.recorder import RecordTimeout
from shared import deliveries
from shared.callbacks import ENDPOINTS, Endpoint, PayloadError, load
from shared.signing import SignatureError, verify

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
    try:
        verified = verify(
            secrets,
            headers,
            body,
            # Whole seconds, as the timestamps are: ± the tolerance exactly is still fresh.
            now=int(current_app.extensions.get("clock", time.time)()),
            tolerance=settings.tolerance_seconds,
            allow_secret_header=endpoint.allow_secret_header and settings.webhook_allow_secret_header,
        )
    except SignatureError as exc:
        log.info("%s refused: %s (%s)", endpoint.path, exc.code, exc.message)
        raise ApiError(401, exc.code, exc.message) from None
    enforce("sender", endpoint.name, settings.rate_limit_sender)
    try:
        callback = load(endpoint, body)
        # Standard Webhooks: webhook-id, which is signed. HMAC: the id headers are not signed,
        # so the verified signature identifies the request too (a replay under another id is
        # a duplicate). X-Webhook-Secret signs nothing: its id headers are taken as they come.
        delivery_id = deliveries.delivery_id_for(headers, body)
    except PayloadError as exc:
        raise ApiError(400, exc.code, exc.message, exc.details) from None
    try:
        recorded = current_app.extensions["recorder"].record(
            deliveries.incoming(endpoint.name, delivery_id, callback, body, headers, verified.signature)
        )
    except RecordTimeout as exc:
        raise unavailable(str(exc)) from None
    log.debug(
        "%s delivery %s for job %s accepted (%s%s)", endpoint.path, recorded.delivery_id, recorded.job_id,
        verified.scheme, ", duplicate" if recorded.duplicate else "",
    )
    return {
        "accepted": True,
        "duplicate": recorded.duplicate,
        "delivery_id": recorded.delivery_id,
        "job_id": recorded.job_id,
    }, 200


def _register(endpoint: Endpoint) -> None:
    bp.add_url_rule(
        endpoint.path, endpoint=endpoint.name.replace(".", "_"), view_func=lambda: receive(endpoint), methods=["POST"]
    )


for _endpoint in ENDPOINTS.values():
    _register(_endpoint)
