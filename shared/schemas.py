"""Marshmallow schemas: one per payload. The same schemas feed /openapi.json."""

from __future__ import annotations

import math
import re

from marshmallow import INCLUDE, RAISE, Schema, ValidationError, fields, post_dump, validate, validates_schema

from shared import lifecycle

JOB_TYPE = r"^[a-z][a-z0-9_.-]{0,63}$"
ID_LENGTH = validate.Length(min=1, max=255)
# Human text a sender reports (message, error): stored in its own column, so bounded.
TEXT_LENGTH = validate.Length(max=10_000)


class FullMatch(validate.Regexp):
    """A Regexp the whole value must match.

    marshmallow's Regexp uses re.match, and `$` also matches before a trailing newline: a
    job_type of 64 characters and a newline would pass and not fit its varchar(64). The
    pattern keeps its anchors as the contract writes it, as /openapi.json shows it.
    """

    def __call__(self, value):
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


class Progress(fields.Field):
    """0–100; an integer, or a float that is rounded (n8n's expressions yield floats)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValidationError("Must be a number from 0 to 100.")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValidationError("Must be a number from 0 to 100.")
        if not 0 <= value <= 100:
            raise ValidationError("Must be a number from 0 to 100.")
        return int(round(value))


def json_integer(value):
    """`value`, with a float that holds an integer read as that integer: JSON has one number
    type, and a JavaScript sender cannot tell 1 from 1.0 (nor can JSON Schema's `integer`)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def external_id(value: str | int | float) -> str:
    """The string form of an id a sender gives as a string or an integer: how it is stored."""
    return str(json_integer(value)).strip()


class JsonInteger(fields.Integer):
    """An integer, strictly (no strings), where 3.0 is the integer 3 (json_integer)."""

    def __init__(self, **kwargs):
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        return super()._deserialize(json_integer(value), attr, data, **kwargs)


class PageLimit(fields.Integer):
    """A page size from the query string: 1 to 100 written in ASCII digits, as the spec says
    (Python's int() would also take "+5", " 5", "1_0" and other scripts' digits)."""

    def __init__(self, **kwargs):
        super().__init__(load_default=20, validate=validate.Range(min=1, max=100), **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str) and not re.fullmatch(r"[0-9]{1,3}", value):
            raise ValidationError("Must be a whole number from 1 to 100.")
        return super()._deserialize(value, attr, data, **kwargs)


class ExternalUserId(fields.Field):
    """The application's own user id: a string or an integer, read as its string form."""

    def _deserialize(self, value, attr, data, **kwargs):
        value = json_integer(value)
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValidationError("Must be a string or an integer.")
        value = external_id(value)
        if not 1 <= len(value) <= 255:
            raise ValidationError("Must be 1 to 255 characters.")
        return value


class StatusWord(fields.String):
    def _deserialize(self, value, attr, data, **kwargs):
        word = super()._deserialize(value, attr, data, **kwargs)
        if not lifecycle.is_known_word(word):
            raise ValidationError(f"Unknown status word {word!r}; one of: {', '.join(lifecycle.WORDS)}.")
        return word.strip().lower()


class ErrorValue(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        if value is not None and not isinstance(value, (str, dict)):
            raise ValidationError("Must be a string or an object.")
        if isinstance(value, str):
            TEXT_LENGTH(value)
        return value


# --- app-facing API --------------------------------------------------------------------


class JobCreateSchema(Schema):
    class Meta:
        unknown = RAISE

    job_type = fields.String(required=True, validate=FullMatch(JOB_TYPE))
    params = fields.Dict(load_default=dict)


class JobAssignSchema(Schema):
    class Meta:
        unknown = RAISE

    user_id = ExternalUserId(required=True, allow_none=True)


class JobListQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    status = fields.String(validate=validate.OneOf(lifecycle.STATUSES))
    job_type = fields.String(validate=FullMatch(JOB_TYPE))
    limit = PageLimit()
    cursor = fields.String()


class NotificationListQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    unread = fields.Boolean(truthy={"true"}, falsy={"false"})
    job_id = fields.String(validate=ID_LENGTH)
    limit = PageLimit()
    cursor = fields.String()


# --- answers: dumped by these schemas, described by them in /openapi.json -----------------


class Timestamp(fields.DateTime):
    """ISO-8601 in UTC with `Z` for its offset, as CONTRACT §2 writes timestamps."""

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else value.isoformat().replace("+00:00", "Z")


class AnswerSchema(Schema):
    """What an answer is dumped from: objects and rows by attribute, dicts by key (a row's
    `row["id"]` is no key, and marshmallow would try it, and fail, field after field)."""

    def get_attribute(self, obj, attr, default):
        if isinstance(obj, dict):
            return obj.get(attr, default)
        return getattr(obj, attr, default)


class JobEventSchema(AnswerSchema):
    id = fields.String()
    kind = fields.String()
    status = fields.String(allow_none=True)
    progress = fields.Integer(allow_none=True)
    message = fields.String(allow_none=True)
    data = fields.Raw(allow_none=True)
    created_at = Timestamp()


class ArtifactImageSchema(AnswerSchema):
    url = fields.String(allow_none=True)
    file_path = fields.String(allow_none=True)
    description = fields.String(allow_none=True)
    format = fields.String(allow_none=True)
    size_bytes = fields.Integer(allow_none=True)
    width = fields.Integer(allow_none=True)
    height = fields.Integer(allow_none=True)
    model = fields.String(allow_none=True)
    generation_time_seconds = fields.Float(allow_none=True)


class ArtifactChapterSchema(AnswerSchema):
    position = fields.Integer()
    title = fields.String(allow_none=True)
    description = fields.String(allow_none=True)
    content = fields.String(allow_none=True)


class ArtifactBookSchema(AnswerSchema):
    title = fields.String(allow_none=True)
    topic = fields.String(allow_none=True)
    goal = fields.String(allow_none=True)
    outline = fields.Raw(allow_none=True)
    word_count = fields.Integer(allow_none=True)
    chapter_count = fields.Integer(allow_none=True)
    chapters = fields.List(fields.Nested(ArtifactChapterSchema))


class ArtifactsSchema(AnswerSchema):
    """What a job produced (shared/artifacts.py): its images, or its book; {} for neither."""

    images = fields.List(fields.Nested(ArtifactImageSchema))
    book = fields.Nested(ArtifactBookSchema)


class JobSchema(AnswerSchema):
    """A job as CONTRACT §3 shows it, dumped from shared.jobs.Shown (a job with its owner's
    application id and its artifacts)."""

    id = fields.String()
    job_type = fields.String()
    status = fields.String(validate=validate.OneOf(lifecycle.STATUSES))
    phase = fields.String(allow_none=True)
    progress = fields.Integer()
    params = fields.Dict()
    result = fields.Raw(allow_none=True)
    error = fields.Raw(allow_none=True)
    user_id = fields.String(attribute="owner", allow_none=True)
    external_id = fields.String(allow_none=True)
    source = fields.String(validate=validate.OneOf(["api", "callback", "action"]))
    attempts = fields.Integer()
    created_at = Timestamp()
    updated_at = Timestamp()
    completed_at = Timestamp(allow_none=True)
    artifacts = fields.Nested(ArtifactsSchema)


class JobDetailSchema(JobSchema):
    events = fields.List(fields.Nested(JobEventSchema))


class JobPageSchema(AnswerSchema):
    items = fields.List(fields.Nested(JobSchema))
    next_cursor = fields.String(allow_none=True)


class NotificationSchema(AnswerSchema):
    id = fields.String()
    type = fields.String()
    title = fields.String()
    message = fields.String()
    job_id = fields.String(allow_none=True)
    data = fields.Dict()
    created_at = Timestamp()
    read_at = Timestamp(allow_none=True)


class NotificationPageSchema(AnswerSchema):
    items = fields.List(fields.Nested(NotificationSchema))
    next_cursor = fields.String(allow_none=True)


class ErrorSchema(AnswerSchema):
    """Every refusal (CONTRACT §2), dumped from ingress.errors.ApiError."""

    error = fields.String(required=True, attribute="code")
    message = fields.String(required=True)
    details = fields.Dict()

    @post_dump
    def _details_only_when_given(self, data, **kwargs):
        if not data.get("details"):
            data.pop("details", None)
        return data


class AcceptedSchema(AnswerSchema):
    """A sender's delivery recorded (or found a duplicate): dumped from a deliveries.Recorded."""

    accepted = fields.Boolean(dump_default=True, validate=validate.Equal(True))
    duplicate = fields.Boolean()
    delivery_id = fields.String()
    job_id = fields.String()


class HealthSchema(AnswerSchema):
    status = fields.String(validate=validate.OneOf(["ok"]))


class ReadinessSchema(AnswerSchema):
    """/readyz: each check "ok", or what is wrong with that part."""

    status = fields.String(validate=validate.OneOf(["ready", "unavailable"]))
    checks = fields.Dict(keys=fields.String(), values=fields.String())


# --- sender-facing webhooks ------------------------------------------------------------


class _StatusReport(Schema):
    """What every sender's status report carries; other keys are kept."""

    class Meta:
        unknown = INCLUDE

    job_id = fields.String(required=True, validate=ID_LENGTH)
    status = StatusWord(required=True)
    progress = Progress(allow_none=True)
    message = fields.String(allow_none=True, validate=TEXT_LENGTH)
    user_id = ExternalUserId(allow_none=True)

    @validates_schema
    def _job_id_not_blank(self, data, **kwargs):
        if not data["job_id"].strip():
            raise ValidationError("Must not be blank.", "job_id")


class JobStatusCallbackSchema(_StatusReport):
    """POST /api/n8n/hooks/job-status (CONTRACT §4)."""

    result = fields.Raw(allow_none=True)
    error = ErrorValue(allow_none=True)
    job_type = fields.String(allow_none=True, validate=FullMatch(JOB_TYPE))


job_create_schema = JobCreateSchema()
job_assign_schema = JobAssignSchema()
job_list_query_schema = JobListQuerySchema()
notification_list_query_schema = NotificationListQuerySchema()
job_status_callback_schema = JobStatusCallbackSchema()
job_schema = JobSchema()
job_detail_schema = JobDetailSchema()
job_page_schema = JobPageSchema()
notification_schema = NotificationSchema()
notification_page_schema = NotificationPageSchema()
error_schema = ErrorSchema()
accepted_schema = AcceptedSchema()
health_schema = HealthSchema()
readiness_schema = ReadinessSchema()


# --- AI backends (seeds 001 and 002): their payloads exactly as they send them ----------

# "WxH": ASCII digits only (\d would take "١٠٢٤", Arabic-Indic digits), six at most, so
# that width and height fit their integer columns; shared/artifacts.py reads the groups.
DIMENSIONS = r"^\s*([0-9]{1,6})\s*[xX×]\s*([0-9]{1,6})\s*$"


class _SenderStatus(_StatusReport):
    """What the AI backends send with every status report."""

    timestamp = fields.String(allow_none=True)
    environment = fields.String(allow_none=True)
    error_message = fields.String(allow_none=True, validate=TEXT_LENGTH)


class ImageFileSchema(Schema):
    class Meta:
        unknown = INCLUDE

    file_path = fields.String(allow_none=True)
    url = fields.String(allow_none=True)
    description = fields.String(allow_none=True)
    format = fields.String(allow_none=True, validate=validate.Length(max=32))
    size_bytes = JsonInteger(allow_none=True, validate=validate.Range(min=0, max=2**62))
    dimensions = fields.String(allow_none=True, validate=FullMatch(DIMENSIONS))


class ImageDataSchema(Schema):
    class Meta:
        unknown = INCLUDE

    job_id = fields.String(allow_none=True)
    images = fields.List(fields.Nested(ImageFileSchema), allow_none=True)
    metadata = fields.Dict(allow_none=True)
    status = fields.String(allow_none=True)
    generated_at = fields.String(allow_none=True)
    original_prompt = fields.String(allow_none=True)


class ImageCompletionSchema(_SenderStatus):
    """POST /api/webhooks/image-completion: the image backend's payload (seed 001)."""

    data = fields.Nested(ImageDataSchema, allow_none=True)

    @validates_schema
    def _completed_has_images(self, data, **kwargs):
        if lifecycle.canonical(data["status"]) == lifecycle.SUCCEEDED and not (data.get("data") or {}).get("images"):
            raise ValidationError("A completed image job needs a non-empty data.images.", "data")


class ChapterSchema(Schema):
    class Meta:
        unknown = INCLUDE

    title = fields.String(allow_none=True)
    content = fields.String(allow_none=True)
    description = fields.String(allow_none=True)


class BookDataSchema(Schema):
    class Meta:
        unknown = INCLUDE

    book_title = fields.String(allow_none=True)
    topic = fields.String(allow_none=True)
    goal = fields.String(allow_none=True)
    outline = fields.List(fields.Raw(), allow_none=True)
    chapters = fields.List(fields.Nested(ChapterSchema), allow_none=True)
    generated_at = fields.String(allow_none=True)
    word_count = JsonInteger(allow_none=True, validate=validate.Range(min=0, max=2**31 - 1))
    chapter_count = JsonInteger(allow_none=True, validate=validate.Range(min=0, max=2**31 - 1))


class BookCompletionSchema(_SenderStatus):
    """POST /api/webhooks/book-completion: the book backend's payload (seed 002)."""

    book_data = fields.Nested(BookDataSchema, allow_none=True)

    @validates_schema
    def _completed_has_a_book(self, data, **kwargs):
        book = data.get("book_data") or {}
        if lifecycle.canonical(data["status"]) == lifecycle.SUCCEEDED and not (
            (book.get("book_title") or "").strip() and book.get("chapters")
        ):
            raise ValidationError("A completed book job needs book_data.book_title and book_data.chapters.", "book_data")


image_completion_schema = ImageCompletionSchema()
book_completion_schema = BookCompletionSchema()
