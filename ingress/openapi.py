"""/openapi.json: OpenAPI 3 built from the marshmallow schemas (apispec)."""

from __future__ import annotations

from functools import lru_cache

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from shared import actions, deliveries, lifecycle, schemas
from shared.callbacks import ENDPOINTS
from shared.paging import CURSOR_PATTERNS

# The error codes each status answers with (CONTRACT §2), as the document names them.
ERRORS = {
    400: ("invalid_json", "validation_error", "bad_request"),
    401: ("unauthorized", "missing_signature", "invalid_signature", "stale_timestamp"),
    403: ("forbidden",),
    404: ("not_found",),
    409: ("idempotency_conflict", "not_retryable", "not_cancellable"),
    413: ("payload_too_large",),
    415: ("unsupported_media_type",),
    429: ("rate_limited",),
    503: ("unavailable", "not_configured"),
}


def _json(component: str) -> dict:
    # A marshmallow class name: apispec resolves it to a $ref of its component.
    return {"content": {"application/json": {"schema": f"{component}Schema"}}}


# Any operation can meet these: a URL with NUL characters, a rate limit, the database down.
ALWAYS = (400, 429, 503)


def _error(code: int) -> dict:
    """The answer `code` is: the Error shape, with the codes that status answers with."""
    codes = list(ERRORS[code])
    return {
        "description": ", ".join(codes),
        "content": {"application/json": {"schema": {
            "allOf": [{"$ref": "#/components/schemas/Error"}], "properties": {"error": {"enum": codes}},
        }}},
        **({"headers": RETRY_AFTER} if code in (429, 503) else {}),
    }
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again", "required": True, "schema": {"type": "integer"},
    },
}


def _responses(ok: dict[int, tuple[str, object]], errors: tuple[int, ...], headers: dict | None = None) -> dict:
    out = {str(code): {"description": text, **(_json(schema) if schema else {})} for code, (text, schema) in ok.items()}
    for code, described in (headers or {}).items():
        out[str(code)]["headers"] = {
            name: {"description": text, "required": True, "schema": {"type": "string"}}
            for name, text in described.items()
        }
    for code in sorted(set(errors) | set(ALWAYS)):
        out[str(code)] = _error(code)
    return out


JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}

# --- what the schemas accept, as patterns --------------------------------------------------
# The schemas trim with str.strip() and call a value blank with str.isspace(): these are
# exactly those characters (JSON Schema's \s is another set).
_SPACE = "\\t\\n\\x0b\\x0c\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
NOT_BLANK = f"[^{_SPACE}]"  # a pattern is a search: somewhere a character that is not a space
# 1 to 255 characters once trimmed (ExternalUserId, Idempotency-Key on the API).
TRIMMED_ID = f"^[{_SPACE}]*[^{_SPACE}](?:[\\s\\S]{{0,253}}[^{_SPACE}])?[{_SPACE}]*$"
# A delivery id header: at most 255 characters once spaces and tabs are trimmed; blank is ignored.
DELIVERY_ID = "^[ \\t]*(?:[^ \\t](?:[\\s\\S]{0,%d}[^ \\t])?)?[ \\t]*$" % (deliveries.MAX_ID_LENGTH - 2)


def _words(words) -> str:
    """A status word among `words`, in any case, with spaces around it (StatusWord)."""
    spelled = "|".join("".join(f"[{c}{c.upper()}]" if c.isalpha() else c for c in word) for word in sorted(words))
    return f"^[{_SPACE}]*(?:{spelled})[{_SPACE}]*$"


STATUS_WORD = _words(lifecycle.WORDS)
NOT_A_SUCCESS = _words(w for w in lifecycle.WORDS if lifecycle.WORDS[w] != lifecycle.SUCCEEDED)
EXTERNAL_ID = [
    {"type": "string", "pattern": TRIMMED_ID},
    # Read as its decimal string, which must fit the same 255 characters.
    {"type": "integer", "minimum": -(10**254 - 1), "maximum": 10**255 - 1},
]


def _custom_fields(self, field, **kwargs) -> dict:
    """JSON Schema of the fields whose rules live in their own code (shared/schemas.py)."""
    null = [{"type": "null"}] if field.allow_none else []
    if isinstance(field, schemas.ExternalUserId):
        return {"anyOf": EXTERNAL_ID + null}
    if isinstance(field, schemas.Progress):
        return {"type": ["number", "null"] if null else "number", "minimum": 0, "maximum": 100}
    if isinstance(field, schemas.ErrorValue):
        return {"anyOf": [{"type": "string", "maxLength": schemas.TEXT_LENGTH.max}, {"type": "object"}] + null}
    if isinstance(field, schemas.StatusWord):
        return {"pattern": STATUS_WORD}
    return {}


def _completed_needs(container: str, required: dict) -> dict:
    """A completion is refused without what it announces (ImageCompletion, BookCompletion)."""
    return {"anyOf": [
        {"properties": {"status": {"pattern": NOT_A_SUCCESS}}},
        {"required": [container], "properties": {container: {"type": "object", **required}}},
    ]}


# The cross-field rules of the schemas' @validates_schema.
SCHEMA_RULES = {
    # CONTRACT §5 and README "CRM actions: format": actionType given (not null) is the enriched
    # format and needs entiteType and entiteId; else the legacy one needs typeAction.
    "Action": {"anyOf": [
        {"required": ["actionType", "entiteType", "entiteId"], "properties": {
            "actionType": {"type": "string"}, "entiteType": {"type": "string"}, "entiteId": {"anyOf": EXTERNAL_ID},
        }},
        {"required": ["typeAction"], "properties": {"actionType": {"type": "null"}, "typeAction": {"type": "string"}}},
    ]},
    "ImageCompletion": _completed_needs("data", {
        "required": ["images"], "properties": {"images": {"type": "array", "minItems": 1}},
    }),
    "BookCompletion": _completed_needs("book_data", {
        "required": ["book_title", "chapters"],
        "properties": {
            "book_title": {"type": "string", "pattern": NOT_BLANK}, "chapters": {"type": "array", "minItems": 1},
        },
    }),
}


IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "description": "1 to 255 characters once trimmed",
    "schema": {"type": "string", "pattern": TRIMMED_ID},
}
DELIVERY_ID_HEADERS = [
    {"name": name, "in": "header", "schema": {"type": "string", "pattern": DELIVERY_ID},
     "description": "The delivery's id (CONTRACT §4) when webhook-id is not given: at most 255 characters"}
    for name in ("X-Delivery-Id", "Idempotency-Key")
]


def _operations() -> dict:
    authed = (401, 404)
    job_ops = {
        "/api/jobs": {
            "post": {
                "summary": "Create a job; it is dispatched to n8n",
                "parameters": [IDEMPOTENCY_KEY],
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
            "post": {
                "summary": "Dispatch a failed or cancelled job again",
                "responses": _responses({202: ("Pending again", "Job")}, (401, 404, 409)),
            },
        },
        "/api/jobs/{job_id}/cancel": {
            "parameters": [JOB_ID],
            "post": {
                "summary": "Cancel a job that is not terminal",
                "responses": _responses({202: ("Cancelled", "Job")}, (401, 404, 409)),
            },
        },
        "/api/actions": {
            "post": {
                "summary": "Record a CRM action; it is routed by actionType prefix and dispatched to n8n",
                "parameters": [IDEMPOTENCY_KEY],
                "requestBody": {"required": True, **_json("Action")},
                "responses": _responses(
                    {202: ("Recorded as a crm_action job", "ActionAccepted"),
                     200: ("Same Idempotency-Key: the first action", "ActionAccepted")},
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
            "post": {
                "summary": "Mark a notification read",
                "responses": _responses({200: ("The notification", "Notification")}, authed),
            },
        },
        "/healthz": {"get": {"summary": "Liveness", "security": [], "responses": {
            "200": {"description": "Running", **_json("Health")}, "400": _error(400),
        }}},
        "/readyz": {"get": {"summary": "Readiness: database, broker, beat and a worker", "security": [], "responses": {
            "200": {"description": "Ready", **_json("Readiness")}, "400": _error(400),
            "503": {
                "description": "Not ready: each check names what is wrong", "headers": RETRY_AFTER,
                **_json("Readiness"),
            },
        }}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "security": [], "responses": {
            "200": {"description": "Text format", "content": {"text/plain": {"schema": {"type": "string"}}}},
            "400": _error(400), "503": _error(503),
        }}},
        "/openapi.json": {"get": {"summary": "This document", "security": [], "responses": {
            "200": {"description": "OpenAPI 3", "content": {"application/json": {"schema": {"type": "object"}}}},
            "400": _error(400),
        }}},
    }
    signed = [{"hmac": [], "timestamp": []}, {"webhookSignature": []}]
    for endpoint in ENDPOINTS.values():
        security = signed + ([{"webhookSecret": []}] if endpoint.allow_secret_header else [])
        job_ops[endpoint.path] = {
            "post": {
                "summary": f"Sender webhook ({endpoint.name})",
                "security": security,
                "parameters": DELIVERY_ID_HEADERS,
                "requestBody": {"required": True, **_json(type(endpoint.schema).__name__.removesuffix("Schema"))},
                "responses": _responses({200: ("Recorded (or a duplicate)", "Accepted")}, (400, 401, 413, 415, 503)),
            }
        }
    return job_ops


# The schemas that dump answers; an Error's details are there only when there are some.
ANSWERS = (
    "Job", "JobDetail", "JobEvent", "JobPage", "Notification", "NotificationPage", "Error", "Accepted",
    "ActionAccepted", "Health", "Readiness", "ArtifactImage", "ArtifactBook", "ArtifactChapter",
)


@lru_cache(maxsize=1)
def _build() -> dict:
    plugin = MarshmallowPlugin()
    api = APISpec(
        title="AI workflow bridge",
        version="1.0.0",
        openapi_version="3.1.0",
        plugins=[plugin],
        info={"description": (
            "Signed, durable bridge between applications and n8n / AI backends. In every JSON body, strings hold "
            "neither U+0000 nor lone surrogates and values nest at most 32 levels deep (400 validation_error)."
        )},
    )
    plugin.converter.add_attribute_function(_custom_fields)
    for name in (
        "JobCreate", "JobAssign", "JobListQuery", "NotificationListQuery", "Job", "JobDetail",
        "JobPage", "Notification", "NotificationPage", "Error", "Accepted", "Health", "Readiness",
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
    components = document["components"]["schemas"]
    for name, rule in SCHEMA_RULES.items():
        components[name].update(rule)
    # fields.Raw() items refuse null (allow_none is False), as the schema's own Raw fields do.
    components["BookData"]["properties"]["outline"]["items"] = {"not": {"type": "null"}}
    for endpoint in ENDPOINTS.values():  # _StatusReport: a job_id that is not blank
        components[type(endpoint.schema).__name__.removesuffix("Schema")]["properties"]["job_id"]["pattern"] = NOT_BLANK
    cursors = {"/api/jobs": CURSOR_PATTERNS[str], "/api/notifications": CURSOR_PATTERNS[int]}
    for path, pattern in cursors.items():
        for parameter in document["paths"][path]["get"]["parameters"]:
            if parameter["name"] == "cursor":
                parameter["description"] = "next_cursor of the previous page; empty or absent: the first page"
                parameter["schema"]["pattern"] = pattern
    for name in ANSWERS:  # every key of an answer is always there (shared.schemas.AnswerSchema)
        components[name]["required"] = [key for key in components[name]["properties"] if key != "details"]
    document["security"] = [{"bearer": []}]
    return document


def spec(settings=None) -> dict:
    document = dict(_build())
    if settings is not None:
        document["servers"] = [{"url": settings.public_base_url}]
    return document
