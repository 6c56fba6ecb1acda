"""What n8n answers a dispatch with, read without raising (shared.dispatch.send)."""

import json

import pytest
import requests

from shared.dispatch import send
from shared.models import Job
from shared.settings import Settings

SETTINGS = Settings(database_url="sqlite://", broker_url="memory://", n8n_webhook_secrets=(b"s",),
                    n8n_job_webhook="https://n8n.example.com/webhook/ai-job")


class Answers:
    """An HTTP session whose every POST gets the same answer."""

    def __init__(self, status: int, headers: dict):
        self.status, self.headers = status, headers

    def post(self, url, **kwargs):
        response = requests.Response()
        response.status_code, response._content = self.status, b""
        response.headers.update(self.headers)
        return response


@pytest.mark.parametrize("value, seconds", [("7", 7.0), ("²", None), ("٤٢", None), ("1e3", None), ("", None)])
def test_retry_after_is_read_as_ascii_seconds_or_ignored(value, seconds):
    job = Job(id="job-1", job_type="cover_letter", source="api", params={}, attempts=1)
    outcome = send(Answers(503, {"Retry-After": value}), SETTINGS, job)
    assert (outcome.kind, outcome.http_status, outcome.retry_after) == ("retry", 503, seconds)


class Json(Answers):
    def __init__(self, answer):
        super().__init__(200, {"Content-Type": "application/json"})
        self.answer = answer

    def post(self, url, **kwargs):
        response = super().post(url, **kwargs)
        response._content = json.dumps(self.answer).encode()
        return response


@pytest.mark.parametrize("answer, own_id", [
    ({"job_id": "backend-1"}, "backend-1"),
    ({"executionId": 12345}, "12345"),
    ({"id": " padded \n"}, "padded"),  # as a callback's job_id is read
    ({"job_id": "x" * 255}, "x" * 255),
    ({"job_id": "x" * 256}, None),  # never cut: the cut id could be another job's
    ({"id": 10**300}, None),
    ({"id": "a\u0000b"}, None),  # JSON allows it; no text column stores it
    ({"id": "\ud800"}, None),
    ({"job_id": "job-1"}, None),  # our own id back
])
def test_a_backends_own_id_is_kept_whole_when_it_can_be_stored(answer, own_id):
    job = Job(id="job-1", job_type="cover_letter", source="api", params={}, attempts=1)
    outcome = send(Json(answer), SETTINGS, job)
    assert (outcome.kind, outcome.external_id) == ("ok", own_id)
