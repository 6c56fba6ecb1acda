"""A dispatch that cannot go anywhere names the variable that would send it."""

from shared import actions
from shared.dispatch import send
from shared.models import Job
from shared.settings import Settings


class NoNetwork:
    def post(self, *args, **kwargs):
        raise AssertionError("nothing may be sent without a URL")


def configured(**n8n) -> Settings:
    return Settings(database_url="sqlite://", broker_url="memory://", n8n_webhook_secrets=(b"s",), **n8n)


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
