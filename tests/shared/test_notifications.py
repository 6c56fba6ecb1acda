"""shared.notifications. The owner's notification of a finished job says what the sender said
(seed 003's n8n answers the CRM "Relance envoyée à Marie Dumitru"), else what the job
produced. A user reads and marks read their own notifications; an admin every one."""

import json
import uuid

import pytest
from sqlalchemy import select

from shared import deliveries, jobs, lifecycle
from shared.accounts import get_or_create_user
from shared.callbacks import ENDPOINTS
from shared.errors import NotFound
from shared.jobs import create_job
from shared.models import Job, Notification
from shared.notifications import list_notifications, mark_read, notify

HOOK, IMAGES, BOOKS = (
    next(e for e in ENDPOINTS.values() if e.path == path)
    for path in ("/api/n8n/hooks/job-status", "/api/webhooks/image-completion", "/api/webhooks/book-completion")
)


def owned_job(session, job_type="crm_action", source="action") -> str:
    owner = get_or_create_user(session, f"notified-{uuid.uuid4().hex[:8]}")
    job, _ = create_job(session, owner, job_type, {"actionType": "RELANCE_CANDIDAT_EMAIL"}, source=source)
    session.flush()
    return job.id


def notified(session, endpoint, body: dict) -> tuple[str, str, str]:
    """Apply `body` as a delivery to `endpoint`; the outcome notification of its job."""
    incoming = deliveries.Incoming(endpoint.name, f"note-{uuid.uuid4()}", body["job_id"], "running",
                                   json.dumps(body).encode(), {})
    [recorded] = deliveries.record_many(session.connection(), [incoming])
    deliveries.apply(session, [recorded.pk], max_attempts=10)
    [note] = session.execute(
        select(Notification.type, Notification.title, Notification.message)
        .where(Notification.job_id == body["job_id"], Notification.type.in_(("job_succeeded", "job_failed")))
    ).all()
    return tuple(note)


def test_the_senders_message_is_the_text_of_a_finished_action(session):
    job_id = owned_job(session)
    body = {"job_id": job_id, "status": "succeeded", "message": "Relance envoyée à Marie Dumitru",
            "result": {"emailEnvoye": True}}
    assert notified(session, HOOK, body) == ("job_succeeded", "Job succeeded", "Relance envoyée à Marie Dumitru")


def test_the_results_summary_speaks_when_there_is_no_message(session):
    job_id = owned_job(session)
    body = {"job_id": job_id, "status": "succeeded", "result": {"summary": "Devis généré et envoyé à Juliette Rimbo"}}
    assert notified(session, HOOK, body)[2] == "Devis généré et envoyé à Juliette Rimbo"


def test_without_words_the_text_says_the_job_is_done(session):
    job_id = owned_job(session)
    assert notified(session, HOOK, {"job_id": job_id, "status": "succeeded"})[2] == "Your crm_action job is done."


@pytest.mark.parametrize("body, text", [
    # Seed 001's failure: its message, with the cause it names in error_message.
    ({"status": "failed", "message": "Échec de la génération d'images", "error_message": "Clé API Google invalide"},
     "Échec de la génération d'images: Clé API Google invalide"),
    ({"status": "failed", "message": "Relance impossible: adresse e-mail invalide"},
     "Relance impossible: adresse e-mail invalide"),
    ({"status": "failed", "error_message": "Clé API Google invalide"},
     "Your image_generation job failed: Clé API Google invalide"),
])
def test_a_failure_says_the_senders_words_and_the_cause(session, body, text):
    job_id = owned_job(session, "image_generation", "api")
    assert notified(session, IMAGES, {"job_id": job_id, **body}) == ("job_failed", "Job failed", text)


def image(n):
    return {"url": f"http://backend/{n}.png", "format": "PNG", "dimensions": "64x64"}


@pytest.mark.parametrize("count, text", [(1, "1 image generated."), (3, "3 images generated.")])
def test_images_without_a_message_keep_their_count(session, count, text):
    job_id = owned_job(session, "image_generation", "api")
    body = {"job_id": job_id, "status": "completed", "data": {"images": [image(n) for n in range(count)]}}
    assert notified(session, IMAGES, body) == ("job_succeeded", "Images ready", text)


def test_images_with_a_message_say_it(session):
    job_id = owned_job(session, "image_generation", "api")
    body = {"job_id": job_id, "status": "completed", "message": "Votre chat astronaute est prêt",
            "data": {"images": [image(1)]}}
    assert notified(session, IMAGES, body) == ("job_succeeded", "Images ready", "Votre chat astronaute est prêt")


@pytest.mark.parametrize("chapters, text", [(1, "“Entretien” is ready: 1 chapter."),
                                            (2, "“Entretien” is ready: 2 chapters.")])
def test_a_book_counts_its_chapters_in_words(session, chapters, text):
    job_id = owned_job(session, "book_generation", "api")
    body = {"job_id": job_id, "status": "completed", "book_data": {
        "book_title": "Entretien", "chapters": [{"title": f"Chapitre {n}", "content": "…"} for n in range(chapters)],
    }}
    assert notified(session, BOOKS, body) == ("job_succeeded", "Book ready", text)


def people(session):
    """An owner with a job, another user, an admin."""
    owner = get_or_create_user(session, f"owner-{uuid.uuid4().hex[:8]}")
    other = get_or_create_user(session, f"other-{uuid.uuid4().hex[:8]}")
    admin = get_or_create_user(session, f"admin-{uuid.uuid4().hex[:8]}")
    admin.is_admin = True
    job, _ = create_job(session, owner, "cover_letter", {})
    return owner, other, admin, job


def ids(page) -> list[int]:
    return [n.id for n in page[0]]


def test_a_user_reads_their_own_notifications_and_an_admin_every_one(session):
    owner, other, admin, job = people(session)
    mine = [notify(session, job, lifecycle.JOB_FAILED, "Job failed", f"try {n}") for n in range(3)]
    for_admins = notify(session, job, lifecycle.JOB_UNASSIGNED, "Unassigned job", "assign it", admins=True)
    assert ids(list_notifications(session, owner, job_id=job.id)) == mine[::-1]  # newest first
    assert ids(list_notifications(session, other, job_id=job.id)) == []
    assert ids(list_notifications(session, admin, job_id=job.id)) == [for_admins] + mine[::-1]


def test_notifications_page_newest_first_each_once(session):
    owner, _, _, job = people(session)
    made = [notify(session, job, lifecycle.JOB_FAILED, "Job failed", f"try {n}") for n in range(5)]
    seen, cursor = [], None
    while True:
        rows, cursor = list_notifications(session, owner, job_id=job.id, limit=2, cursor=cursor)
        seen += [n.id for n in rows]
        if cursor is None:
            break
    assert seen == made[::-1]


def test_marking_read_is_the_readers_own_and_keeps_the_first_time(session):
    owner, other, admin, job = people(session)
    first, second = (notify(session, job, lifecycle.JOB_FAILED, "Job failed", "boom") for _ in range(2))
    read = mark_read(session, owner, str(first))
    assert read.id == first and read.read_at is not None
    assert mark_read(session, owner, str(first)).read_at == read.read_at  # read once, when first read
    assert ids(list_notifications(session, owner, unread=True, job_id=job.id)) == [second]
    assert ids(list_notifications(session, owner, unread=False, job_id=job.id)) == [first]
    for who, notification_id in [(other, str(second)), (owner, "²"), (owner, "٤٢"), (owner, "9" * 19)]:
        with pytest.raises(NotFound):
            mark_read(session, who, notification_id)
    assert mark_read(session, admin, str(second)).read_at is not None


def test_the_notifications_waiting_for_an_owner_go_to_the_one_assigned(session):
    _, _, admin, job = people(session)
    job = session.get(Job, job.id)
    job.user_id = None
    waiting = notify(session, job, lifecycle.JOB_FAILED, "Job failed", "boom")
    for_admins = notify(session, job, lifecycle.JOB_UNASSIGNED, "Unassigned job", "assign it", admins=True)
    assert ids(list_notifications(session, admin, job_id=job.id)) == [for_admins, waiting]
    assigned = f"assigned-{uuid.uuid4().hex[:8]}"
    jobs.assign_job(session, job, assigned)
    new_owner = get_or_create_user(session, assigned)
    assert ids(list_notifications(session, new_owner, job_id=job.id)) == [waiting]
    assert session.get(Notification, for_admins).user_id is None  # the call to assign stays the admins'
