"""/openapi.json: OpenAPI 3 built from the marshmallow schemas (apispec)."""

from __future__ import annotations

from functools import lru_cache

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from shared import actions, schemas
from shared.callbacks import ENDPOINTS

ERRORS = {
    400: "invalid_json or validation_error",
    401: "unauthorized, missing_signature, invalid_signature or stale_timestamp",
    403: "forbidden",
    404: "not_found",
    409: "idempotency_conflict, not_retryable or not_cancellable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "unavailable or not_configured",
}


def _json(component: str) -> dict:
    # A marshmallow class name: apispec resolves it to a $ref of its component.
    return {"content": {"application/json": {"schema": f"{component}Schema"}}}


# Any operation can meet these: a URL with NUL characters, a rate limit, the database down.
ALWAYS = (400, 429, 503)
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again", "schema": {"type": "integer"}}}


def _responses(ok: dict[int, tuple[str, object]], errors: tuple[int, ...], headers: dict | None = None) -> dict:
    out = {str(code): {"description": text, **(_json(schema) if schema else {})} for code, (text, schema) in ok.items()}
    for code, described in (headers or {}).items():
        out[str(code)]["headers"] = {name: {"description": text, "schema": {"type": "string"}} for name, text in described.items()}
    for code in sorted(set(errors) | set(ALWAYS)):
        out[str(code)] = {"description": ERRORS[code], **_json("Error"), **({"headers": RETRY_AFTER} if code in (429, 503) else {})}
    return out


JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}


def _operations() -> dict:
    authed = (401, 404)
    job_ops = {
        "/api/jobs": {
            "post": {
                "summary": "Create a job; it is dispatched to n8n",
                "parameters": [{"name": "Idempotency-Key", "in": "header", "schema": {"type": "string", "maxLength": 255}}],
                "requestBody": {"required": True, **_json("JobCreate")},
                "responses": _responses(
                    {202: ("Created", "Job"), 200: ("Same Idempotency-Key: the first job", "Job")},
                    (400, 401, 409, 413, 415, 503),
                    headers={202: {"Location": "The job's URL"}, 200: {"Location": "The job's URL"}},
                ),
            },
            "get": {
                "summary": "List jobs, newest first",
                "parameters": [{"in": "query", "schema": "JobListQuerySchema"}],
                "responses": _responses({200: ("A page of jobs", "JobPage")}, (400, 401)),
            },
        },
        "/api/jobs/{job_id}": {
            "parameters": [JOB_ID],
            "get": {
                "summary": "A job with its events",
                "parameters": [{"name": "If-None-Match", "in": "header", "schema": {"type": "string"}}],
                "responses": _responses(
                    {200: ("The job", "JobDetail"), 304: ("Not modified", None)}, authed,
                    headers={200: {"ETag": "Send it back in If-None-Match"}, 304: {"ETag": "Unchanged"}},
                ),
            },
            "patch": {
                "summary": "Assign a job to a user (admin)",
                "requestBody": {"required": True, **_json("JobAssign")},
                "responses": _responses({200: ("The job", "Job")}, (400, 401, 403, 404, 413, 415)),
            },
        },
        "/api/jobs/{job_id}/retry": {
            "parameters": [JOB_ID],
            "post": {"summary": "Dispatch a failed or cancelled job again", "responses": _responses({202: ("Pending again", "Job")}, (401, 404, 409))},
        },
        "/api/jobs/{job_id}/cancel": {
            "parameters": [JOB_ID],
            "post": {"summary": "Cancel a job that is not terminal", "responses": _responses({202: ("Cancelled", "Job")}, (401, 404, 409))},
        },
        "/api/actions": {
            "post": {
                "summary": "Record a CRM action; it is routed by actionType prefix and dispatched to n8n",
                "parameters": [{"name": "Idempotency-Key", "in": "header", "schema": {"type": "string", "maxLength": 255}}],
                "requestBody": {"required": True, **_json("Action")},
                "responses": _responses(
                    {202: ("Recorded as a crm_action job", "ActionAccepted"), 200: ("Same Idempotency-Key: the first action", "ActionAccepted")},
                    (400, 401, 409, 413, 415, 503),
                ),
            }
        },
        "/api/notifications": {
            "get": {
                "summary": "List notifications, newest first",
                "parameters": [{"in": "query", "schema": "NotificationListQuerySchema"}],
                "responses": _responses({200: ("A page of notifications", "NotificationPage")}, (400, 401)),
            }
        },
        "/api/notifications/{notification_id}/read": {
            "parameters": [{"name": "notification_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "post": {"summary": "Mark a notification read", "responses": _responses({200: ("The notification", "Notification")}, authed)},
        },
        "/healthz": {"get": {"summary": "Liveness", "security": [], "responses": {"200": {"description": "Running"}}}},
        "/readyz": {"get": {"summary": "Readiness: database and broker", "security": [], "responses": {"200": {"description": "Ready"}, "503": {"description": "Not ready"}}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "security": [], "responses": {"200": {"description": "Text format", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/openapi.json": {"get": {"summary": "This document", "security": [], "responses": {"200": {"description": "OpenAPI 3"}}}},
    }
    signed = [{"hmac": [], "timestamp": []}, {"webhookSignature": []}]
    for endpoint in ENDPOINTS.values():
        security = signed + ([{"webhookSecret": []}] if endpoint.allow_secret_header else [])
        job_ops[endpoint.path] = {
            "post": {
                "summary": f"Sender webhook ({endpoint.name})",
                "security": security,
                "requestBody": {"required": True, **_json(type(endpoint.schema).__name__.removesuffix("Schema"))},
                "responses": _responses({200: ("Recorded (or a duplicate)", "Accepted")}, (400, 401, 413, 415, 503)),
            }
        }
    return job_ops


@lru_cache(maxsize=1)
def _build() -> dict:
    api = APISpec(
        title="AI workflow bridge",
        version="1.0.0",
        openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()],
        info={"description": "Signed, durable bridge between applications and n8n / AI backends."},
    )
    for name in (
        "JobCreate", "JobAssign", "JobListQuery", "NotificationListQuery", "Job", "JobDetail",
        "JobPage", "Notification", "NotificationPage", "Error", "Accepted",
    ):
        api.components.schema(name, schema=getattr(schemas, f"{name}Schema"))
    for name in ("Action", "ActionAccepted"):
        api.components.schema(name, schema=getattr(actions, f"{name}Schema"))
    for endpoint in ENDPOINTS.values():
        name = type(endpoint.schema).__name__.removesuffix("Schema")
        api.components.schema(name, schema=type(endpoint.schema))
    api.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    api.components.security_scheme("hmac", {"type": "apiKey", "in": "header", "name": "X-Signature"})
    api.components.security_scheme("timestamp", {"type": "apiKey", "in": "header", "name": "X-Timestamp"})
    api.components.security_scheme("webhookSignature", {"type": "apiKey", "in": "header", "name": "webhook-signature"})
    api.components.security_scheme("webhookSecret", {"type": "apiKey", "in": "header", "name": "X-Webhook-Secret"})
    for path, operations in _operations().items():
        parameters = operations.pop("parameters", None)
        api.path(path=path, operations=operations, parameters=parameters)
    document = api.to_dict()
    document["security"] = [{"bearer": []}]
    return document


def spec(settings=None) -> dict:
    document = dict(_build())
    if settings is not None:
        document["servers"] = [{"url": settings.public_base_url}]
    return document
