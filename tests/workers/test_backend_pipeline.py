"""The AI backends end to end on real processes: seeds replayed byte for byte, artifacts
stored once, auto-created jobs and their owners, the backend's own ids."""

import json
import os
import subprocess
import uuid
from pathlib import Path

import requests
from sqlalchemy import delete, func, select

from helpers import bearer, wait_for
from helpers.env import WEBHOOK_SECRET
from shared.models import Book, BookChapter, Delivery, Job, JobImage

SEEDS = Path(__file__).resolve().parents[1] / "fixtures/seeds"
SECRET_HEADER = {"Content-Type": "application/json", "X-Webhook-Secret": WEBHOOK_SECRET}


def post(stack, path, body: bytes):
    response = requests.post(stack.base_url + path, data=body, headers=SECRET_HEADER, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def get_job(stack, token, job_id):
    return requests.get(f"{stack.base_url}/api/jobs/{job_id}", headers=bearer(token), timeout=10)


def settled(stack, token, job_id, events: int):
    """The job once `events` callbacks are applied to it."""
    def check():
        response = get_job(stack, token, job_id)
        if response.status_code != 200:
            return None
        job = response.json()
        return job if sum(e["kind"] == "callback" for e in job["events"]) >= events else None

    return wait_for(check, timeout=30, message=f"{events} callbacks applied to {job_id}")


def forget(engine, job_id):
    """Remove what earlier tests left under a seed's fixed job id, so this test owns it."""
    with engine.begin() as db:
        db.execute(delete(Delivery).where(Delivery.job_id == job_id))
        db.execute(delete(Job).where(Job.id == job_id))  # events, artifacts, notifications cascade


def count(engine, model, *where):
    with engine.connect() as db:
        return db.scalar(select(func.count()).select_from(model).where(*where))


def test_image_seed_replayed_redelivered_and_reserialised_is_stored_once(stack, users, engine):
    _, admin = users("admin", admin=True)
    completed = (SEEDS / "image-completed.json").read_bytes()
    job_id = json.loads(completed)["job_id"]
    forget(engine, job_id)
    post(stack, "/api/webhooks/image-completion", (SEEDS / "image-progress.json").read_bytes())
    answers = [post(stack, "/api/webhooks/image-completion", completed) for _ in range(3)]
    assert [a["duplicate"] for a in answers] == [False, True, True]
    reserialised = json.dumps(json.loads(completed), separators=(",", ":"), ensure_ascii=False).encode()
    assert not post(stack, "/api/webhooks/image-completion", reserialised)["duplicate"]  # other bytes
    late = json.dumps({"job_id": job_id, "status": "generating", "progress": 60}).encode()
    post(stack, "/api/webhooks/image-completion", late)

    job = settled(stack, admin, job_id, events=4)
    assert (job["status"], job["progress"], job["source"], job["job_type"]) == ("succeeded", 100, "callback", "image_generation")
    assert job["artifacts"]["images"] == [{
        "url": "http://localhost:9006/generated_images/e0145eaa.../image_1.png",
        "file_path": "./generated_images/e0145eaa.../image_1.png",
        "description": "Un chat astronaute dans l'espace", "format": "PNG", "size_bytes": 2048576,
        "width": 1024, "height": 1024, "model": "gemini-2.0-flash-exp", "generation_time_seconds": 12.5,
    }]
    assert count(engine, JobImage, JobImage.job_id == job_id) == 1
    statuses = [e["status"] for e in job["events"] if e["kind"] == "callback"]
    assert statuses == ["generating", "completed", "completed", "generating"]
    # The failure the backend documents for the same job comes too late to change anything.
    post(stack, "/api/webhooks/image-completion", (SEEDS / "image-failed.json").read_bytes())
    job = settled(stack, admin, job_id, events=5)
    assert job["status"] == "succeeded" and job["error"] is None


def test_book_seed_with_user_id_is_owned_by_that_user(stack, users, engine, app):
    completed = (SEEDS / "book-completed.json").read_bytes()
    forget(engine, "3e25b048-e00e-4890-9219-4a50092b3f38")
    for _ in range(3):
        post(stack, "/api/webhooks/book-completion", completed)
    _, admin = users("admin", admin=True)
    job = settled(stack, admin, "3e25b048-e00e-4890-9219-4a50092b3f38", events=1)
    assert (job["status"], job["user_id"], job["job_type"]) == ("succeeded", "user_clerkid_123", "book_generation")
    book = job["artifacts"]["book"]
    assert (book["title"], book["topic"], book["word_count"], book["chapter_count"]) == (
        "150 techniques pour réussir son entretien d'embauche", "Entretien d'embauche", 15000, 1)
    assert book["chapters"] == [{"position": 1, "title": "Chapitre 1: Préparation",
                                 "description": "Comment se préparer", "content": "# Chapitre 1\n\nContenu..."}]
    assert book["outline"] == [{"title": "Chapitre 1", "description": "Préparation"}]
    assert count(engine, Book, Book.job_id == job["id"]) == 1
    assert count(engine, BookChapter) >= 1
    from shared.accounts import create_token

    with app.extensions["sessionmaker"].begin() as db:
        owner = create_token(db, "user_clerkid_123")
    notes = requests.get(f"{stack.base_url}/api/notifications", headers=bearer(owner), timeout=10).json()["items"]
    assert [(n["type"], n["title"], n["data"]["chapter_count"]) for n in notes] == [("job_succeeded", "Book ready", 1)]


def test_seed_curls_run_as_written(stack, users):
    _, admin = users("admin", admin=True)
    for script in ("image-curl-dev.sh", "image-test-script.sh", "book-curl-test.sh"):
        result = subprocess.run(
            ["bash", str(SEEDS / script)], capture_output=True, text=True, timeout=30,
            env={**os.environ, "BRIDGE_URL": stack.base_url, "WEBHOOK_SECRET": WEBHOOK_SECRET},
        )
        answer = json.loads(result.stdout)
        assert answer["accepted"] is True, (script, result.stdout)
        job = settled(stack, admin, answer["job_id"], events=1)
        assert job["status"] == "succeeded", script
        assert job["artifacts"], script


def test_unassigned_job_admin_notified_assigned_owner_sees_it(stack, users):
    _, admin = users("admin", admin=True)
    owner, owner_token = users("owner")
    job_id = f"orphan-{uuid.uuid4()}"
    payload = json.loads((SEEDS / "image-completed.json").read_bytes())
    payload["job_id"] = payload["data"]["job_id"] = job_id
    post(stack, "/api/webhooks/image-completion", json.dumps(payload).encode())
    job = settled(stack, admin, job_id, events=1)
    assert (job["user_id"], job["status"]) == (None, "succeeded")
    notes = requests.get(f"{stack.base_url}/api/notifications?job_id={job_id}", headers=bearer(admin), timeout=10).json()
    assert sorted(n["type"] for n in notes["items"]) == ["job_succeeded", "job_unassigned"]
    assert get_job(stack, owner_token, job_id).status_code == 404

    assigned = requests.patch(f"{stack.base_url}/api/jobs/{job_id}", json={"user_id": owner},
                              headers=bearer(admin), timeout=10)
    assert (assigned.status_code, assigned.json()["user_id"]) == (200, owner)
    assert assigned.json()["artifacts"]["images"][0]["width"] == 1024
    seen = get_job(stack, owner_token, job_id)
    assert seen.status_code == 200 and seen.json()["artifacts"]["images"]
    mine = requests.get(f"{stack.base_url}/api/notifications", headers=bearer(owner_token), timeout=10).json()["items"]
    assert [(n["type"], n["data"]["images_count"]) for n in mine] == [("job_succeeded", 1)]


def test_backend_own_id_completes_the_original_job(stack, n8n, users, engine):
    _, token = users("sorami")
    backend_id = f"c76c36ee-{uuid.uuid4()}"
    created = requests.post(f"{stack.base_url}/api/jobs", headers=bearer(token), timeout=10,
                            json={"job_type": "image_generation", "params": {"answer_id": backend_id}}).json()
    wait_for(lambda: get_job(stack, token, created["id"]).json()["external_id"] == backend_id, message="external_id")
    payload = json.loads((SEEDS / "image-completed.json").read_bytes())
    payload["job_id"] = payload["data"]["job_id"] = backend_id
    answer = post(stack, "/api/webhooks/image-completion", json.dumps(payload).encode())
    assert answer["job_id"] == backend_id
    job = settled(stack, token, created["id"], events=1)
    assert (job["status"], job["external_id"]) == ("succeeded", backend_id)
    assert len(job["artifacts"]["images"]) == 1
    assert count(engine, Job, Job.id == backend_id) == 0  # no second job, no orphan


def test_backend_metrics(stack, users):
    _, admin = users("admin", admin=True)
    payload = json.loads((SEEDS / "image-completed.json").read_bytes())
    payload["job_id"] = f"metrics-{uuid.uuid4()}"
    body = json.dumps(payload).encode()
    post(stack, "/api/webhooks/image-completion", body)
    post(stack, "/api/webhooks/image-completion", body)
    settled(stack, admin, payload["job_id"], events=1)
    text = requests.get(stack.base_url + "/metrics", timeout=10).text
    assert 'bridge_deliveries_by_status{endpoint="backend.image-completion",status="succeeded"}' in text
    assert 'bridge_deliveries_duplicates{endpoint="backend.image-completion"}' in text
    assert "bridge_image_size_bytes_count" in text
    assert 'bridge_delivery_apply_seconds_bucket{endpoint="backend.image-completion",le="+Inf"}' in text
