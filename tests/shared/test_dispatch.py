"""shared.dispatch.send: what n8n answers is read without raising; a dispatch that cannot go
anywhere names the variable that would send it."""

import json

import pytest
import requests

from shared import actions
from shared.dispatch import send
from shared.models import Job
from shared.settings import Settings

def configured(**n8n) -> Settings:
    return Settings(database_url="sqlite://", broker_url="memory://", n8n_webhook_secrets=(b"s",), **n8n)


SETTINGS = configured(n8n_job_webhook="https://n8n.example.com/webhook/ai-job")


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


class NoNetwork:
    def post(self, *args, **kwargs):
        raise AssertionError("nothing may be sent without a URL")


def test_an_action_routed_by_name_needs_n8n_base_url_even_with_the_job_webhook_set():
    posted = {"actionType": "PLANIFIER_ENTRETIEN", "entiteType": "candidat", "entiteId": "DUMI15091992"}
    action = actions.normalise(actions.action_schema.load(posted), caller_id="caller-1")
    job = Job(id="job-1", job_type="crm_action", source="action", params=action, attempts=1,
              dispatch_url="marjorie-planning")
    outcome = send(NoNetwork(), configured(n8n_job_webhook="https://n8n.example.com/webhook/ai-job"), job)
    assert (outcome.kind, outcome.error) == (
        "permanent", "not configured: set N8N_BASE_URL (the route 'marjorie-planning' resolves against it)"
    )


def test_a_job_without_any_n8n_url_names_both_variables():
    job = Job(id="job-2", job_type="cover_letter", source="api", params={}, attempts=1)
    outcome = send(NoNetwork(), configured(), job)
    assert (outcome.kind, outcome.error) == ("permanent", "not configured: set N8N_JOB_WEBHOOK or N8N_BASE_URL")
