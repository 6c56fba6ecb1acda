"""shared.jobs: creation (with its Idempotency-Key), and the readers, one per use: a poll's
plain row (job_to_show), a job to change (job_to_change), a page (list_jobs). A user sees
their own jobs; an admin sees every one."""

import json
import uuid

import pytest

from shared import deliveries, jobs, lifecycle
from shared.accounts import get_or_create_user
from shared.callbacks import ENDPOINTS
from shared.errors import Conflict, NotFound
from shared.models import User
from shared.paging import decode_cursor

IMAGES = next(e for e in ENDPOINTS.values() if e.path == "/api/webhooks/image-completion")


def user(session, admin: bool = False) -> User:
    made = get_or_create_user(session, f"reader-{uuid.uuid4().hex[:8]}")
    made.is_admin = admin
    return made


def unique_type() -> str:
    return f"unit.{uuid.uuid4().hex[:8]}"


def test_an_idempotency_key_gives_back_the_first_job_of_its_user(session):
    alice, bob = user(session), user(session)
    first, created = jobs.create_job(session, alice, "cover_letter", {"tone": "warm"}, "key-1")
    again, created_again = jobs.create_job(session, alice, "cover_letter", {"tone": "warm"}, "key-1")
    assert (created, created_again, again.id) == (True, False, first.id)
    with pytest.raises(Conflict) as refused:
        jobs.create_job(session, alice, "cover_letter", {"tone": "cold"}, "key-1")
    assert refused.value.code == "idempotency_conflict"
    theirs, created_for_bob = jobs.create_job(session, bob, "cover_letter", {"tone": "cold"}, "key-1")
    assert created_for_bob and theirs.id != first.id  # a key is its user's own
    unkeyed = [jobs.create_job(session, alice, "cover_letter", {})[0].id for _ in range(2)]
    assert len(set(unkeyed)) == 2


@pytest.mark.parametrize("reader", ["job_to_show", "job_to_change"])
def test_a_user_reads_their_own_job_and_an_admin_any(session, reader):
    read = getattr(jobs, reader)
    owner, other, admin = user(session), user(session), user(session, admin=True)
    job, _ = jobs.create_job(session, owner, "cover_letter", {})
    assert read(session, owner, job.id).id == job.id
    assert read(session, admin, job.id).id == job.id
    for who, job_id in [(other, job.id), (owner, str(uuid.uuid4())), (admin, str(uuid.uuid4()))]:
        with pytest.raises(NotFound):
            read(session, who, job_id)


def test_a_polls_row_is_what_the_job_shows(session):
    owner = user(session)
    job, _ = jobs.create_job(session, owner, "cover_letter", {"tone": "warm"})
    row = jobs.job_to_show(session, owner, job.id)
    assert (row.owner, row.status, row.params, jobs.etag(row)) == (owner.external_id, "pending", {"tone": "warm"},
                                                                  jobs.etag(job))
    jobs.change_job(session, job, lifecycle.Cancel())
    assert jobs.etag(jobs.job_to_show(session, owner, job.id)) == jobs.etag(job) != jobs.etag(row)


def test_the_detail_of_a_job_has_its_events_and_artifacts(session):
    owner = user(session)
    job, _ = jobs.create_job(session, owner, "image_generation", {})
    body = {"job_id": job.id, "status": "completed", "message": "prêt",
            "data": {"images": [{"url": "http://backend/1.png", "format": "PNG", "dimensions": "64x64"}]}}
    [recorded] = deliveries.record_many(session.connection(), [deliveries.Incoming(
        IMAGES.name, f"detail-{uuid.uuid4()}", job.id, "completed", json.dumps(body).encode(), {})])
    deliveries.apply(session, [recorded.pk], max_attempts=10)
    shown = jobs.detail(session, jobs.job_to_show(session, owner, job.id))
    assert (shown.owner, shown.status) == (owner.external_id, "succeeded")
    assert [image["url"] for image in shown.artifacts["images"]] == ["http://backend/1.png"]
    assert [(event.kind, event.status) for event in shown.events] == [("callback", "completed")]
    [listed] = jobs.shown(session, [job])
    assert (listed.owner, listed.artifacts) == (owner.external_id, shown.artifacts)


def test_pages_hold_each_visible_job_once_newest_first(session):
    owner, other, admin = user(session), user(session), user(session, admin=True)
    job_type = unique_type()
    made = [jobs.create_job(session, owner, job_type, {"n": n})[0] for n in range(5)]
    jobs.create_job(session, other, job_type, {})
    seen, cursor, pages = [], None, 0
    while True:
        rows, cursor = jobs.list_jobs(session, owner, job_type=job_type, limit=2, cursor=cursor)
        seen += rows
        pages += 1
        if cursor is None:
            break
        assert decode_cursor(cursor)[1] == rows[-1].id  # the next page starts after the last row
    newest_first = sorted(made, key=lambda job: (job.created_at, job.id), reverse=True)
    assert ([job.id for job in seen], pages) == ([job.id for job in newest_first], 3)
    assert len(jobs.list_jobs(session, admin, job_type=job_type, limit=10)[0]) == 6  # the other's too
    assert jobs.list_jobs(session, other, job_type=job_type, limit=10)[0][0].user_id == other.id


def test_a_page_filters_by_status_and_type(session):
    owner = user(session)
    job_type = unique_type()
    kept, cancelled = (jobs.create_job(session, owner, job_type, {"n": n})[0] for n in range(2))
    jobs.cancel_job(session, cancelled)
    jobs.create_job(session, owner, unique_type(), {})
    assert [job.id for job in jobs.list_jobs(session, owner, status="cancelled", job_type=job_type)[0]] == [
        cancelled.id]
    assert [job.id for job in jobs.list_jobs(session, owner, status="pending", job_type=job_type)[0]] == [kept.id]
    assert jobs.list_jobs(session, owner, job_type=job_type, limit=5)[1] is None  # one page: no cursor
