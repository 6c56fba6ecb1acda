"""End to end: a backend answers our dispatch with its own id (the n8n stand-in's
`answer_id`) and calls back under that id, before or while its answer is recorded. One job
(the original) ends with every event, artifact and notification; no orphan."""

import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests
from sqlalchemy import func, select

from helpers import bearer, wait_for
from helpers.env import WEBHOOK_SECRET
from shared.models import Job, JobEvent, JobImage, Notification

HOOK = "/api/webhooks/image-completion"
HEADERS = {"Content-Type": "application/json", "X-Webhook-Secret": WEBHOOK_SECRET}


def callbacks(backend_id: str) -> list[dict]:
    images = [{"url": f"http://backend/{backend_id}/{n}.png", "format": "PNG", "dimensions": "64x64"} for n in (1, 2)]
    return [
        {"job_id": backend_id, "status": "generating", "progress": 40},
        {"job_id": backend_id, "status": "completed", "data": {"images": images, "metadata": {"model_name": "m"}}},
    ]


def send_callbacks(stack, backend_id: str) -> None:
    for body in callbacks(backend_id):  # back to back, as the backend sends them
        response = requests.post(stack.base_url + HOOK, data=json.dumps(body), headers=HEADERS, timeout=30)
        assert response.status_code == 200, response.text


def create_job(stack, token, backend_id: str) -> str:
    response = requests.post(f"{stack.base_url}/api/jobs", headers=bearer(token), timeout=30,
                             json={"job_type": "image_generation", "params": {"answer_id": backend_id}})
    assert response.status_code == 202, response.text
    return response.json()["id"]


def merged(engine, job_id: str, backend_id: str):
    """The original job once it holds both callbacks and nothing is left under the backend's id."""
    with engine.connect() as db:
        def count(model, *where):
            return db.scalar(select(func.count()).select_from(model).where(*where))

        job = db.execute(select(Job).where(Job.id == job_id)).one()
        seen = {
            "job": (job.status, job.progress, job.external_id),
            "callbacks": count(JobEvent, JobEvent.job_id == job_id, JobEvent.kind == "callback"),
            "images": count(JobImage, JobImage.job_id == job_id),
            "notifications": db.execute(
                select(Notification.type, Notification.user_id).where(Notification.job_id == job_id)
            ).all(),
            "orphan": count(Job, Job.id == backend_id),
        }
        return seen if seen["callbacks"] == 2 and seen["orphan"] == 0 else None


def test_callbacks_before_the_dispatch_end_on_the_original_job(stack, users, engine):
    _, token = users("merge-first")
    backend_id = f"backend-{uuid.uuid4()}"
    send_callbacks(stack, backend_id)

    def auto_created():
        with engine.connect() as db:
            return db.scalar(select(Job.status).where(Job.id == backend_id)) == "succeeded"

    wait_for(auto_created, timeout=30, message="the job auto-created from the callbacks")
    job_id = create_job(stack, token, backend_id)
    seen = wait_for(lambda: merged(engine, job_id, backend_id), timeout=60, message="the merge")
    with engine.connect() as db:
        owner = db.scalar(select(Job.user_id).where(Job.id == job_id))
    assert seen == {"job": ("succeeded", 100, backend_id), "callbacks": 2, "images": 2,
                    "notifications": [("job_succeeded", owner)], "orphan": 0}


def test_callbacks_racing_the_dispatch_answer_end_on_the_original_job(stack, users, engine):
    _, token = users("merge-race")
    backend_ids = [f"backend-{uuid.uuid4()}" for _ in range(6)]
    with ThreadPoolExecutor(12) as pool:
        created = [pool.submit(create_job, stack, token, backend_id) for backend_id in backend_ids]
        sent = [pool.submit(send_callbacks, stack, backend_id) for backend_id in backend_ids]
        job_ids = [future.result() for future in created]
        [future.result() for future in sent]
    for job_id, backend_id in zip(job_ids, backend_ids):
        seen = wait_for(lambda: merged(engine, job_id, backend_id), timeout=60, message=f"one job for {backend_id}")
        assert seen["job"] == ("succeeded", 100, backend_id) and seen["images"] == 2, seen
        assert [kind for kind, _ in seen["notifications"]] == ["job_succeeded"], seen
